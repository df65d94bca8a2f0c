// findings.js: spans from code-point offsets, the patient's warning, rejection reasons (English).
import './fake-browser.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { segments, kindsFound, warningText, reasonText, parseWordList, isPersonal, KINDS } from '../assets/js/findings.js';

const joined = (segs) => segs.map((s) => s.text).join('');
const marked = (segs) => segs.filter((s) => s.kind).map((s) => [s.kind, s.text]);

test('offsets count code points: an emoji before a phone number does not shift the mark', () => {
  const text = '😀 call 13812345678 now';
  // what the server sends: code points, not UTF-16 units (the emoji is one code point, two units)
  const start = Array.from(text).indexOf('1');
  assert.equal(start, 7);
  assert.notEqual(text.indexOf('1'), start, 'the test must tell the two counts apart');
  const segs = segments(text, [{ kind: 'phone', start, end: start + 11 }]);
  assert.deepEqual(marked(segs), [['phone', '13812345678']]);
  assert.equal(joined(segs), text);
});

test('Chinese text with several findings, emoji between them', () => {
  const text = '我的电话13812345678👍身份证11010519491231002X，请加微信abc123';
  const chars = Array.from(text);
  const at = (s) => Array.from(text.slice(0, text.indexOf(s))).length;
  const findings = [
    { kind: 'contact', start: at('微信'), end: chars.length },
    { kind: 'phone', start: at('138'), end: at('138') + 11 },
    { kind: 'id_number', start: at('110105'), end: at('110105') + 18 },
  ];
  const segs = segments(text, findings);
  assert.deepEqual(marked(segs), [['phone', '13812345678'], ['id_number', '11010519491231002X'], ['contact', '微信abc123']]);
  assert.equal(joined(segs), text);
  assert.equal(segs[0].text, '我的电话');
  assert.equal(segs[2].text, '👍身份证');
});

test('bad offsets are clipped, never repeat or drop a character', () => {
  const text = 'abc 😀 def';
  const cases = [
    [{ kind: 'phone', start: -3, end: 2 }],                                        // before the start
    [{ kind: 'phone', start: 6, end: 99 }],                                        // past the end
    [{ kind: 'phone', start: 1, end: 5 }, { kind: 'email', start: 3, end: 7 }],    // overlapping
    [{ kind: 'phone', start: 4, end: 4 }],                                         // empty
    [{ kind: 'phone', start: '1', end: 3 }, null, { kind: 'email' }],              // not numbers
    [{ kind: 'email', start: 6, end: 9 }, { kind: 'phone', start: 0, end: 3 }],    // out of order
  ];
  for (const findings of cases) assert.equal(joined(segments(text, findings)), text, JSON.stringify(findings));
  assert.deepEqual(marked(segments(text, cases[2])), [['phone', 'bc 😀'], ['email', ' d']]);
  assert.deepEqual(marked(segments(text, cases[5])), [['phone', 'abc'], ['email', 'def']]);
  assert.deepEqual(segments('', []), [{ text: '', kind: null }]);
  assert.deepEqual(segments(null, undefined), [{ text: '', kind: null }]);
});

test('any findings at all: the text comes back whole (random offsets)', () => {
  const text = '肺结节8毫米😀需要手术吗？call 010-12345678 or a@b.cn 🙏';
  const n = Array.from(text).length;
  let seed = 7;
  const rnd = (m) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % m; };
  for (let i = 0; i < 500; i += 1) {
    const findings = Array.from({ length: rnd(5) }, () => {
      const start = rnd(n + 4) - 2;
      return { kind: KINDS[rnd(KINDS.length)], start, end: start + rnd(12) - 1 };
    });
    const segs = segments(text, findings);
    assert.equal(joined(segs), text, JSON.stringify(findings));
    for (const s of segs) if (s.kind) assert.ok(s.text.length > 0);
  }
});

test('kinds are named once each, in a fixed order', () => {
  const f = [{ kind: 'email' }, { kind: 'phone' }, { kind: 'phone' }, { kind: 'blocked_word' }, { kind: 'nonsense' }];
  assert.deepEqual(kindsFound(f), ['phone', 'email', 'blocked_word']);
  assert.equal(isPersonal('phone'), true);
  assert.equal(isPersonal('blocked_word'), false);
  assert.equal(isPersonal('nonsense'), false);
});

test('the warning names each kind of personal detail', () => {
  assert.equal(warningText([]), '');
  assert.equal(warningText([{ kind: 'phone', start: 0, end: 11 }]),
    'Your question contains a phone number; it will be hidden. You can change your question before sending.');
  assert.equal(warningText([{ kind: 'id_number' }, { kind: 'phone' }, { kind: 'phone' }]),
    'Your question contains a phone number and an ID number; they will be hidden. You can change your question before sending.');
  assert.match(warningText([{ kind: 'phone' }, { kind: 'email' }, { kind: 'contact' }]), /a phone number, an e-mail address, and a private contact/);
  // a blocked word is not hidden: the patient learns a moderator looks first
  assert.equal(warningText([{ kind: 'blocked_word' }]), 'Some words in your question need a moderator’s review before it can be shown.');
  assert.match(warningText([{ kind: 'blocked_word' }, { kind: 'email' }]), /^Your question contains an e-mail address; it will be hidden\..* moderator’s review/);
});

test('rejection reasons: the code in the reader’s language, free text as written', () => {
  assert.equal(reasonText({ reason_code: 'off_topic', reason: null }), 'Not about this session’s topic');
  assert.equal(reasonText({ reason_code: 'medical_advice', reason: '请到门诊复查' }), 'Needs a doctor’s visit; cannot be answered on air: 请到门诊复查');
  assert.equal(reasonText({ reason_code: null, reason: 'Bitte nicht' }), 'Bitte nicht');
  assert.equal(reasonText({ reason: 'old server, no code' }), 'old server, no code');
  assert.equal(reasonText({ reason_code: 'muted' }), 'A moderator stopped your questions in this session');
  assert.equal(reasonText({ reason_code: 'from_a_newer_server' }), 'Other reason');
  assert.equal(reasonText({}), '');
  assert.equal(reasonText(null), '');
});

test('blocked words: one a line or comma-separated, trimmed, no repeats', () => {
  assert.deepEqual(parseWordList(' 代购\n\n加微信 , 特效药，代购\r\nbuy now、 '), ['代购', '加微信', '特效药', 'buy now']);
  assert.deepEqual(parseWordList(''), []);
  assert.deepEqual(parseWordList(null), []);
});
