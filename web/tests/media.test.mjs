// The pure parts of the replay, the library and the HLS player: playlist parsing, clock labels,
// which chapter is playing, which attached videos a session shows.
import './fake-browser.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePlaylist } from '../assets/js/hls-player.js';
import { formatClock, chapterIndexAt, sortChapters } from '../assets/js/replay.js';
import { attachedFor } from '../assets/js/library.js';

const BASE = 'http://oncolive.test/api/sessions/s1/hls/all.m3u8';

test('an EVENT playlist: init map, durations, start times, sequence numbers, no end yet', () => {
  const p = parsePlaylist([
    '#EXTM3U', '#EXT-X-VERSION:7', '#EXT-X-TARGETDURATION:4', '#EXT-X-MEDIA-SEQUENCE:0',
    '#EXT-X-PLAYLIST-TYPE:EVENT', '#EXT-X-MAP:URI="p0-init.mp4"',
    '#EXTINF:4.000,', 'p0-000.m4s', '#EXTINF:3.960,', 'p0-001.m4s',
    '#EXT-X-DISCONTINUITY', '#EXT-X-MAP:URI="p1-init.mp4"', '#EXTINF:4.040,', 'p1-000.m4s', '',
  ].join('\n'), BASE);
  assert.equal(p.target, 4);
  assert.equal(p.type, 'EVENT');
  assert.equal(p.ended, false);
  assert.deepEqual(p.segments.map((s) => [s.seq, s.uri.split('/').pop(), s.start, s.map.split('/').pop(), s.discontinuity]), [
    [0, 'p0-000.m4s', 0, 'p0-init.mp4', false],
    [1, 'p0-001.m4s', 4, 'p0-init.mp4', false],
    [2, 'p1-000.m4s', 7.96, 'p1-init.mp4', true],
  ]);
  assert.equal(p.segments[0].uri, 'http://oncolive.test/api/sessions/s1/hls/p0-000.m4s');
  assert.ok(Math.abs(p.duration - 12) < 1e-9);
});

test('a sliding live playlist starts at its media sequence; ENDLIST marks a VOD', () => {
  const live = parsePlaylist('#EXTM3U\r\n#EXT-X-TARGETDURATION:4\r\n#EXT-X-MEDIA-SEQUENCE:17\r\n#EXT-X-MAP:URI="/x/init.mp4"\r\n#EXTINF:4,\r\na.m4s\r\n#EXTINF:4,\r\nb.m4s\r\n', BASE);
  assert.deepEqual(live.segments.map((s) => s.seq), [17, 18]);
  assert.equal(live.segments[0].map, 'http://oncolive.test/x/init.mp4');
  const vod = parsePlaylist('#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:4,\na.m4s\n#EXT-X-ENDLIST\n', BASE);
  assert.equal(vod.ended, true);
  assert.throws(() => parsePlaylist('<html>', BASE));
});

test('clock labels', () => {
  assert.equal(formatClock(0), '0:00');
  assert.equal(formatClock(754_000), '12:34');
  assert.equal(formatClock(3_723_000), '1:02:03');
  assert.equal(formatClock(undefined), '0:00');
});

test('chapters in media order, the one playing is the last one started', () => {
  const ch = sortChapters([{ at_ms: 30_000, text: 'b' }, { at_ms: 5000, text: 'a' }, { at_ms: null, text: 'x' }, { at_ms: 50_000, text: 'c' }]);
  assert.deepEqual(ch.map((c) => c.text), ['a', 'b', 'c']);
  assert.equal(chapterIndexAt(ch, 0), -1);
  assert.equal(chapterIndexAt(ch, 5000), 0);
  assert.equal(chapterIndexAt(ch, 29_900), 1); // a seek lands a little before the mark
  assert.equal(chapterIndexAt(ch, 40_000), 1);
  assert.equal(chapterIndexAt(ch, 99_000), 2);
});

test('attached videos: "before" until the end, "after" then; unknown ids are left out', () => {
  const lib = [{ id: 'a' }, { id: 'b' }, { id: 'c' }];
  const videos = [{ video: 'a', when: 'before' }, { video: 'b', when: 'after' }, { video: 'zz', when: 'after' }, { video: 'c', when: 'after' }];
  assert.deepEqual(attachedFor({ state: 'scheduled', videos }, lib).map((v) => v.id), ['a']);
  assert.deepEqual(attachedFor({ state: 'live', videos }, lib).map((v) => v.id), ['a']);
  assert.deepEqual(attachedFor({ state: 'ended', videos }, lib).map((v) => v.id), ['b', 'c']);
  assert.deepEqual(attachedFor({ state: 'ended' }, lib), []);
});
