// The pure parts of the replay, the library and the HLS player: playlist parsing, clock labels,
// which chapter is playing, which attached videos a session shows.
import './fake-browser.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePlaylist } from '../assets/js/hls-player.js';
import { formatClock, chapterIndexAt, sortChapters, recordingParts, partIndexAt, partPlayer } from '../assets/js/replay.js';
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

test('the expert offers H.264 (packetization-mode 1, baseline first) before VP8, and VP8 first without H.264', async () => {
  const { orderCodecs } = await import('../assets/js/video.js');
  const C = (mimeType, sdpFmtpLine) => ({ mimeType, clockRate: 90000, sdpFmtpLine });
  const caps = [
    C('video/VP8'), C('video/rtx', 'apt=96'), C('video/VP9', 'profile-id=0'),
    C('video/H264', 'level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f'),
    C('video/H264', 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640034'),
    C('video/H264', 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f'),
    C('video/AV1'), C('video/red'), C('video/ulpfec'),
  ];
  const order = orderCodecs(caps).map((c) => `${c.mimeType.slice(6)}${/packetization-mode=(\d)/.exec(c.sdpFmtpLine || '')?.[1] ?? ''}${/profile-level-id=(\w+)/.exec(c.sdpFmtpLine || '')?.[1] ?? ''}`);
  assert.equal(order[0], 'H264142e01f');
  assert.equal(order[1], 'H2641640034');
  assert.equal(order[2], 'VP8');
  assert.deepEqual(order.slice(3), ['rtx', 'VP9', 'H264042e01f', 'AV1', 'red', 'ulpfec']);
  // a browser that cannot send H.264: VP8 first, nothing else moves ahead of it
  const noH264 = orderCodecs(caps, caps.filter((c) => !/h264/i.test(c.mimeType)));
  assert.equal(noH264[0].mimeType, 'video/VP8');
  assert.deepEqual(noH264.slice(1).map((c) => c.mimeType), caps.filter((c) => c.mimeType !== 'video/VP8').map((c) => c.mimeType));
});

test('a recording\'s parts: listed ones in order, or the one download of an older server', () => {
  const parts = recordingParts({
    download: '/r.mp4',
    parts: [
      { index: 2, download: '/r.webm?part=2', start_ms: 12000, duration_ms: 6000 },
      { index: 0, download: '/r.mp4?part=0', start_ms: 0, duration_ms: 12000 },
    ],
  });
  assert.deepEqual(parts.map((p) => p.index), [0, 2]);
  assert.deepEqual(recordingParts({ download: '/r.mp4', duration_ms: 5000 }),
    [{ index: 0, download: '/r.mp4', start_ms: 0, duration_ms: 5000 }]);
  assert.deepEqual(recordingParts(null), []);
  assert.equal(partIndexAt(parts, 0), 0);
  assert.equal(partIndexAt(parts, 11999), 1, 'a moment before a part starts belongs to it');
  assert.equal(partIndexAt(parts, 11000), 0);
  assert.equal(partIndexAt(parts, 30000), 1);
});

test('the part player loads the part a seek needs and goes on to the next when one ends', () => {
  const attrs = {};
  const video = {
    readyState: 4, currentTime: 0, played: 0,
    getAttribute: (k) => attrs[k] ?? null,
    set src(v) { attrs.src = v; this.loads = (this.loads || 0) + 1; },
    get src() { return attrs.src; },
    play() { this.played += 1; return Promise.resolve(); },
    addEventListener() {},
  };
  const seen = [];
  const parts = [
    { index: 0, download: '/a', start_ms: 0 },
    { index: 1, download: '/b', start_ms: 12000 },
  ];
  const player = partPlayer(video, parts, { onPart: (i) => seen.push(i) });
  assert.equal(video.src, '/a');
  player.seek(15000, 1);
  assert.equal(video.src, '/b');
  assert.equal(video.currentTime, 15);
  player.seek(3000);
  assert.equal(video.src, '/a');
  assert.equal(video.currentTime, 3);
  video.onended();
  assert.equal(video.src, '/b');
  assert.equal(video.currentTime, 12, 'the next part plays from its start');
  video.onended();
  assert.equal(video.src, '/b', 'the last part ends the replay');
  assert.deepEqual(seen, [0, 1, 0, 1]);
  assert.equal(video.loads, 4);
});
