// A small HLS player of our own for the server's playlists (docs/video.md): fragmented MP4, one
// EXT-X-MAP init segment per part, media segments of a few seconds. Loaded only when a patient
// watches from the start or the live WebRTC video cannot connect (a dynamic import), so the
// patient page does not carry it otherwise.
//
// Media Source Extensions first (every Android browser, WeChat's included, and desktops); the
// browser's own HLS only where there is no MSE for the codecs (iPhones before iOS 17.1). The
// buffer is bounded: at most AHEAD_S ahead of the play position is fetched, and what is more
// than BEHIND_S behind it is removed, so a phone with little memory can watch an hour.

const AHEAD_S = 30;
const BEHIND_S = 60;
const LIVE_EDGE_SEGMENTS = 3;

/**
 * Parse a media playlist. Segment `start` times are seconds from the first segment listed
 * (for a VOD or EVENT playlist, from the start of the recording). URIs are resolved on `base`.
 */
export function parsePlaylist(text, base) {
  const lines = String(text).split(/\r?\n/);
  if (!lines[0] || !lines[0].startsWith('#EXTM3U')) throw new Error('not an HLS playlist');
  const out = { target: 4, sequence: 0, ended: false, type: null, segments: [], duration: 0 };
  let map = null;
  let extinf = null;
  let discontinuity = false;
  let start = 0;
  for (const raw of lines) {
    const line = raw.trim();
    if (!line) continue;
    if (line.startsWith('#EXT-X-TARGETDURATION:')) out.target = Number(line.slice(22)) || 4;
    else if (line.startsWith('#EXT-X-MEDIA-SEQUENCE:')) out.sequence = Number(line.slice(22)) || 0;
    else if (line.startsWith('#EXT-X-PLAYLIST-TYPE:')) out.type = line.slice(21).trim();
    else if (line === '#EXT-X-ENDLIST') out.ended = true;
    else if (line === '#EXT-X-DISCONTINUITY') discontinuity = true;
    else if (line.startsWith('#EXT-X-MAP:')) {
      const m = /URI="([^"]+)"/.exec(line);
      if (m) map = new URL(m[1], base).href;
    } else if (line.startsWith('#EXTINF:')) extinf = parseFloat(line.slice(8));
    else if (!line.startsWith('#')) {
      const duration = Number.isFinite(extinf) ? extinf : out.target;
      out.segments.push({
        seq: out.sequence + out.segments.length, uri: new URL(line, base).href,
        duration, start, map, discontinuity,
      });
      start += duration;
      extinf = null;
      discontinuity = false;
    }
  }
  out.duration = start;
  return out;
}

/** How this browser can play our HLS: 'mse', 'native' or null. */
export function hlsSupport(video, mime) {
  const MS = globalThis.ManagedMediaSource || globalThis.MediaSource;
  if (MS && mime && MS.isTypeSupported(mime)) return 'mse';
  if (video.canPlayType && video.canPlayType('application/vnd.apple.mpegurl')) return 'native';
  return null;
}

/** The buffered range around `t` as [start, end], or null. */
function rangeAt(buffered, t) {
  for (let i = 0; i < buffered.length; i += 1) {
    if (buffered.start(i) - 0.3 <= t && t <= buffered.end(i) + 0.05) return [buffered.start(i), buffered.end(i)];
  }
  return null;
}

export class HlsPlayer {
  /**
   * `mime`: the recording's, e.g. 'video/mp4; codecs="avc1.42e01f,opus"'.
   * `onError(err)`: playback cannot go on (the page offers something else).
   */
  constructor(video, { mime, fetch: fetchFn, onError } = {}) {
    this.video = video;
    this.mime = mime;
    this.fetch = fetchFn || ((...a) => fetch(...a));
    this.onError = onError || (() => {});
    this.destroyed = false;
    this.mode = null;
    this.playlist = null;
    this.nextSeq = 0;
    this.initUri = null;
    this.controller = null;
    this.wakeUp = null;
    this.pollTimer = null;
    this.failures = 0;
    this.onSeeking = () => this.seeked();
    this.onTime = () => this.wake();
  }

  /** Play `url` from its start (`from: 'start'`) or near its live edge (`from: 'live'`). */
  async load(url, { from = 'start' } = {}) {
    this.url = url;
    this.from = from;
    this.mode = hlsSupport(this.video, this.mime);
    if (this.mode === 'native') {
      this.video.src = url;
      return;
    }
    if (this.mode !== 'mse') throw new Error('HLS cannot be played here');
    const MS = globalThis.ManagedMediaSource || globalThis.MediaSource;
    this.ms = new MS();
    if (globalThis.ManagedMediaSource && this.ms instanceof globalThis.ManagedMediaSource) this.video.disableRemotePlayback = true;
    this.objectUrl = URL.createObjectURL(this.ms);
    this.video.src = this.objectUrl;
    await new Promise((resolve) => this.ms.addEventListener('sourceopen', resolve, { once: true }));
    if (this.destroyed) return;
    this.sb = this.ms.addSourceBuffer(this.mime);
    try { this.sb.mode = 'segments'; } catch { /* the default */ }
    this.video.addEventListener('seeking', this.onSeeking);
    this.video.addEventListener('timeupdate', this.onTime);
    this.playlist = await this.fetchPlaylist();
    const segs = this.playlist.segments;
    const live = !this.playlist.ended;
    const first = from === 'live' && live ? Math.max(0, segs.length - LIVE_EDGE_SEGMENTS) : 0;
    this.nextSeq = segs.length ? segs[first].seq : this.playlist.sequence;
    this.startAt = segs.length ? segs[first].start : 0;
    this.jumpToBuffer = true;
    if (live) this.schedulePoll();
    this.run().catch((err) => this.fail(err));
  }

  destroy() {
    this.destroyed = true;
    clearTimeout(this.pollTimer);
    if (this.controller) this.controller.abort();
    this.video.removeEventListener('seeking', this.onSeeking);
    this.video.removeEventListener('timeupdate', this.onTime);
    this.wake();
    try { this.video.pause(); } catch { /* ignore */ }
    this.video.removeAttribute('src');
    try { this.video.load(); } catch { /* ignore */ }
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
  }

  fail(err) {
    if (this.destroyed) return;
    this.destroyed = true;
    clearTimeout(this.pollTimer);
    this.onError(err);
  }

  async fetchPlaylist() {
    const res = await this.fetch(this.url, { cache: 'no-store' });
    if (!res.ok) throw Object.assign(new Error(`playlist ${res.status}`), { status: res.status });
    return parsePlaylist(await res.text(), new URL(this.url, globalThis.location.href).href);
  }

  /** Reload a live playlist every target duration (sooner after a failure is not useful). */
  schedulePoll() {
    clearTimeout(this.pollTimer);
    if (this.destroyed) return;
    this.pollTimer = setTimeout(async () => {
      try {
        const next = await this.fetchPlaylist();
        // keep the segment start times of an EVENT playlist continuous with what we had
        this.playlist = next;
        this.failures = 0;
        this.wake();
        if (!next.ended) this.schedulePoll();
      } catch (err) {
        this.failures += 1;
        if (err.status === 404 && this.failures > 3) return this.fail(err);
        this.schedulePoll();
      }
    }, Math.max(1000, (this.playlist ? this.playlist.target : 4) * 1000));
  }

  wake() {
    if (this.wakeUp) {
      const w = this.wakeUp;
      this.wakeUp = null;
      w();
    }
  }

  sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.wakeUp = null; resolve(); }, ms);
      this.wakeUp = () => { clearTimeout(timer); resolve(); };
    });
  }

  /** A seek outside what is buffered: fetch from the segment that holds the new position. */
  seeked() {
    if (this.destroyed || !this.playlist || !this.sb) return;
    const t = this.video.currentTime;
    if (rangeAt(this.sb.buffered, t)) return;
    const seg = this.playlist.segments.find((s) => s.start <= t + 0.05 && t < s.start + s.duration)
      || (t >= this.playlist.duration ? this.playlist.segments[this.playlist.segments.length - 1] : null);
    if (!seg) return;
    this.nextSeq = seg.seq;
    this.ending = false;
    if (this.controller) this.controller.abort();
    this.wake();
  }

  aheadOf(t) {
    const r = rangeAt(this.sb.buffered, t);
    return r ? r[1] - t : 0;
  }

  async run() {
    while (!this.destroyed) {
      const segs = this.playlist.segments;
      const first = segs[0];
      const last = segs[segs.length - 1];
      // a sliding playlist moved on past us: pick up at its oldest segment
      if (first && this.nextSeq < first.seq) this.nextSeq = first.seq;
      const seg = segs.find((s) => s.seq === this.nextSeq);
      if (!seg) {
        if (this.playlist.ended && (!last || this.nextSeq > last.seq)) await this.finish();
        await this.sleep(1000);
        continue;
      }
      if (this.aheadOf(this.video.currentTime) > AHEAD_S) {
        await this.sleep(1000);
        continue;
      }
      this.controller = new AbortController();
      const { signal } = this.controller;
      try {
        if (seg.map && seg.map !== this.initUri) {
          await this.append(await this.get(seg.map, signal));
          this.initUri = seg.map;
        }
        const data = await this.get(seg.uri, signal);
        if (this.nextSeq !== seg.seq) continue; // a seek came in meanwhile
        await this.append(data);
        if (this.nextSeq === seg.seq) this.nextSeq = seg.seq + 1;
        this.failures = 0;
        this.afterAppend();
      } catch (err) {
        if (this.destroyed) return;
        if (err && err.name === 'AbortError') continue;
        if (err && err.name === 'QuotaExceededError') {
          await this.trim(10);
          await this.sleep(1000);
          continue;
        }
        this.failures += 1;
        if (this.failures > 6) throw err;
        await this.sleep(Math.min(8000, 500 * 2 ** this.failures));
      }
    }
  }

  async get(uri, signal) {
    const res = await this.fetch(uri, { signal });
    if (!res.ok) throw Object.assign(new Error(`segment ${res.status}`), { status: res.status });
    return res.arrayBuffer();
  }

  append(data) {
    return this.whenIdle(() => this.sb.appendBuffer(data));
  }

  /** Run one SourceBuffer operation and wait for its `updateend`. */
  whenIdle(op) {
    return new Promise((resolve, reject) => {
      const sb = this.sb;
      const done = () => { cleanup(); resolve(); };
      const fail = () => { cleanup(); reject(new Error('SourceBuffer error')); };
      const cleanup = () => { sb.removeEventListener('updateend', done); sb.removeEventListener('error', fail); };
      sb.addEventListener('updateend', done);
      sb.addEventListener('error', fail);
      try { op(); } catch (err) { cleanup(); reject(err); }
    });
  }

  afterAppend() {
    const video = this.video;
    const buffered = this.sb.buffered;
    if (this.jumpToBuffer && buffered.length) {
      this.jumpToBuffer = false;
      // a live start lands a few segments behind the edge, wherever the media times begin
      const target = Math.max(buffered.start(0), this.from === 'live' ? buffered.start(buffered.length - 1) : buffered.start(0));
      if (video.currentTime < target || this.from === 'live') video.currentTime = target + 0.05;
    }
    // an EVENT playlist grows: let the scrub bar reach all of it
    const end = buffered.length ? buffered.end(buffered.length - 1) : 0;
    const want = this.playlist.ended || this.playlist.type === 'EVENT' ? Math.max(this.playlist.duration, end) : null;
    if (want && this.ms.readyState === 'open' && !this.sb.updating && !(this.ms.duration >= want)) {
      try { this.ms.duration = want; } catch { /* not now */ }
    }
    this.trim(BEHIND_S).catch(() => {});
  }

  /** Remove what is more than `keep` seconds behind the play position. */
  async trim(keep) {
    const buffered = this.sb.buffered;
    if (!buffered.length || this.sb.updating) return;
    const cut = this.video.currentTime - keep;
    if (buffered.start(0) < cut - 1) await this.whenIdle(() => this.sb.remove(0, cut));
  }

  async finish() {
    if (this.ending || this.ms.readyState !== 'open' || this.sb.updating) return;
    this.ending = true;
    try { this.ms.endOfStream(); } catch { /* not now */ }
  }
}
