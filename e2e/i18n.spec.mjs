// The two catalogues: same keys, every key the pages use exists, placeholders match.
// Runs in Node (no browser, no server).
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, expect } from '@playwright/test';

const WEB = join(dirname(fileURLToPath(import.meta.url)), '..', 'web');
// web/ has no package.json saying "module", so load the catalogues as ES modules by content.
const load = async (name) => (await import(`data:text/javascript,${encodeURIComponent(readFileSync(join(WEB, 'assets/i18n', name), 'utf8'))}`)).default;
const en = await load('en.js');
const zh = await load('zh.js');

/** `vote.count_one` and `vote.count_other` are one key, `vote.count`. */
const base = (key) => key.replace(/_(zero|one|two|few|many|other)$/, '');
const keys = (cat) => new Set(Object.keys(cat).map(base));
const placeholders = (s) => (s.match(/\{\w+\}/g) || []).sort().join(',');

// The finding kinds and reason codes of the wire spec (findings.js holds them; it imports the
// catalogues' module, so the lists are repeated here rather than imported into Node).
const KINDS = ['phone', 'landline', 'id_number', 'email', 'bank_card', 'contact', 'record_number', 'blocked_word'];
const REASON_CODES = ['personal_details', 'off_topic', 'duplicate', 'abuse', 'advertising', 'medical_advice', 'other'];

// Keys built at run time from a prefix and a value the protocol defines.
const DYNAMIC = {
  'status.': ['pending', 'approved', 'answering', 'answered', 'rejected', 'merged'],
  'state.': ['scheduled', 'live', 'ended'],
  'conn.': ['connecting', 'online', 'reconnecting', 'offline', 'closed', 'expired', 'gone', 'revoked', 'unauthorized'],
  'pub.': ['idle', 'connecting', 'live', 'reconnecting', 'error'],
  'empty.mod.': ['pending', 'approved', 'rejected', 'done'],
  'err.': ['offline', 'not_connected', 'invalid', 'session_ended', 'rate_limited', 'conflict', 'forbidden', 'unavailable', 'not_found', 'timeout', 'disconnected', 'muted', 'consent_required'],
  'find.': KINDS,
  'kind.': KINDS,
  'reason.': [...REASON_CODES, 'muted'],
  'triage.': ['clinic', 'urgent'],
  'site.triage.': ['clinic', 'urgent'],
  'host.export.': ['md', 'csv', 'json'],
  'host.when.': ['before', 'after'],
  'lib.err.': ['not_mp4', 'no_video', 'unsupported_video_codec', 'unsupported_audio_codec', 'too_long', 'too_large', 'truncated', 'network', 'unauthorized', 'server', 'other'],
  'host.u': ['Title', 'Topic', 'Expert'],
};

function usedKeys() {
  const used = new Set();
  const files = [
    ...readdirSync(WEB).filter((f) => f.endsWith('.html')).map((f) => join(WEB, f)),
    ...readdirSync(join(WEB, 'assets/js')).map((f) => join(WEB, 'assets/js', f)),
  ];
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/\bt(?:In\('\w+', )?\(?'([a-zA-Z][\w.]*)'/g)) used.add(m[1]);
    for (const m of text.matchAll(/data-i18n(?:-[a-z]+)?="([^"]+)"/g)) used.add(m[1]);
    for (const m of text.matchAll(/'((?:reason|keys|media)\.[\w.]+)'/g)) used.add(m[1]);
  }
  for (const [prefix, values] of Object.entries(DYNAMIC)) for (const v of values) used.add(prefix + v);
  return used;
}

test('both catalogues have the same keys', () => {
  const onlyEn = [...keys(en)].filter((k) => !keys(zh).has(k));
  const onlyZh = [...keys(zh)].filter((k) => !keys(en).has(k));
  expect(onlyEn, 'missing in zh.js').toEqual([]);
  expect(onlyZh, 'missing in en.js').toEqual([]);
});

test('every key the pages use is in both catalogues', () => {
  const used = usedKeys();
  expect(used.size).toBeGreaterThan(100);
  expect([...used].filter((k) => !keys(en).has(k)), 'missing in en.js').toEqual([]);
  expect([...used].filter((k) => !keys(zh).has(k)), 'missing in zh.js').toEqual([]);
});

test('placeholders match between languages', () => {
  const byBase = (cat) => {
    const out = {};
    for (const [k, v] of Object.entries(cat)) out[base(k)] = (out[base(k)] || new Set()).add(placeholders(v));
    return out;
  };
  const e = byBase(en);
  const z = byBase(zh);
  const wrong = Object.keys(e).filter((k) => z[k] && [...z[k]].some((p) => p && !e[k].has(p)));
  expect(wrong).toEqual([]);
});
