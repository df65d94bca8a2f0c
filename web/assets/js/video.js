// Video over WHIP (the expert publishes) and WHEP (patients watch), non-trickle: the offer is
// posted once ICE gathering is complete (or after ICE_WAIT_MS), and the answer carries the
// relay's candidates. `DELETE` on the `Location` of the 201 ends the resource.

const ICE_WAIT_MS = 2000;

/**
 * Chromium tells of one network change several times: `offline` and `navigator.connection`
 * changes as the old address goes, then (about a second later, once the new one is up) `online`
 * and more changes. One ICE restart when they have settled gathers on the network the phone
 * ended up on; one made at the first event would offer no address at all.
 */
export const NETWORK_SETTLE_MS = 250;

function waitForIce(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      pc.removeEventListener('icegatheringstatechange', check);
      clearTimeout(timer);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const timer = setTimeout(done, ICE_WAIT_MS);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/**
 * The simulcast layers the expert's camera is sent in, lowest first (the relay ranks them by
 * bitrate, the offer's order until measured): each patient gets the one their link carries.
 */
export const LAYERS = [
  { rid: 'l', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'm', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'h', scaleResolutionDownBy: 1, maxBitrate: 1_200_000 },
];

/**
 * Whether the camera goes out in layers: off unless `localStorage['oncolive.simulcast']` is
 * `true`. On the test machines (two busy cores, H.264 in software) Chromium cannot keep its
 * full-size layer going: it pauses it after a few seconds, and an H.264 recording then moves to
 * a smaller layer in a new part. Until that is measured on an expert's real laptop, one layer
 * is the default (see docs/video.md#simulcast-one-layer-per-viewer).
 */
export function simulcastWanted() {
  try { return localStorage.getItem('oncolive.simulcast') === 'true'; } catch { return false; }
}

/** The camera's transceiver with the simulcast layers, or one layer where the browser refuses. */
export function addVideoTransceiver(pc, track, stream, layered = simulcastWanted()) {
  if (!layered) return pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
  try {
    return pc.addTransceiver(track, {
      direction: 'sendonly', streams: [stream], sendEncodings: LAYERS.map((l) => ({ ...l })),
    });
  } catch {
    return pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
  }
}

/**
 * Under load or a weak uplink the browser would scale the picture down, and every new picture
 * size starts a new part of the recording (a new init segment); a lower frame rate at the same
 * size keeps one part, and a talking expert loses little by it.
 */
function keepResolution(sender) {
  try {
    const params = sender.getParameters();
    params.degradationPreference = 'maintain-resolution';
    const done = sender.setParameters(params);
    if (done && done.catch) done.catch(() => {});
  } catch { /* an older browser: its own choice */ }
}

/**
 * STUN/TURN servers the relay hands out in `Link: <turn:…>; rel="ice-server"; username=…;
 * credential=…` headers (RFC 9725 §4.6). They must be known before gathering, so they are asked
 * for once with `OPTIONS` and reused; without them the direct path is tried alone.
 */
const iceCache = new Map();

/** ICE servers learned another way (the join answer), so the first WHEP needs no `OPTIONS`. */
export function seedIceServers(url, servers) {
  if (Array.isArray(servers)) iceCache.set(url, servers.map((s) => ({ ...s })));
}

async function iceServers(url, token) {
  if (iceCache.has(url)) return iceCache.get(url);
  try {
    const res = await fetch(url, { method: 'OPTIONS', headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
    const servers = parseIceLinks(res.headers.get('Link') || '');
    if (res.ok) iceCache.set(url, servers);
    return servers;
  } catch {
    return []; // no relay reachable yet: the POST will tell
  }
}

export function parseIceLinks(header) {
  const out = [];
  const re = /<([^>]+)>((?:\s*;\s*[\w-]+\s*=\s*(?:"[^"]*"|[^;,]*))*)/g;
  let m;
  while ((m = re.exec(header))) {
    const params = {};
    const pre = /;\s*([\w-]+)\s*=\s*(?:"([^"]*)"|([^;,]*))/g;
    let p;
    while ((p = pre.exec(m[2]))) params[p[1].toLowerCase()] = p[2] !== undefined ? p[2] : p[3].trim();
    if (params.rel !== 'ice-server') continue;
    const server = { urls: m[1] };
    if (params.username) server.username = params.username;
    if (params.credential) server.credential = params.credential;
    out.push(server);
  }
  return out;
}

export class VideoError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The WHEP layer extension's link relation (the URL a viewer's picture quality is asked at). */
export const LAYER_REL = 'urn:ietf:params:whep:ext:core:layer';

/** The URL of the first link in a `Link` header (RFC 8288) with relation `rel`, resolved against `base`. */
export function linkWithRel(header, rel, base) {
  for (const link of String(header || '').split(/,(?=\s*<)/)) {
    const m = /^\s*<([^>]*)>(.*)$/.exec(link);
    const rels = m && /;\s*rel="?([^";]*)"?/i.exec(m[2]);
    if (rels && rels[1].split(/\s+/).includes(rel)) {
      try { return new URL(m[1], base).href; } catch { return null; }
    }
  }
  return null;
}

/** POST the local offer and apply the answer; returns { location, layer, publisher }. */
async function exchange(pc, url, token) {
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await waitForIce(pc);
  let res;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
      body: pc.localDescription.sdp,
      cache: 'no-store',
    });
  } catch (err) {
    throw new VideoError(0, String(err && err.message));
  }
  if (res.status !== 201 && res.status !== 200) {
    let message = res.statusText;
    try { message = (await res.json()).error.message; } catch { /* not JSON */ }
    throw new VideoError(res.status, message);
  }
  const answer = await res.text();
  const loc = res.headers.get('Location');
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  const base = url.startsWith('http') ? url : new URL(url, `${location.protocol}//${location.host}`).href;
  return {
    location: loc ? new URL(loc, base).href : null,
    // where this resource's picture quality is read and asked (absent from an older relay)
    layer: linkWithRel(res.headers.get('Link'), LAYER_REL, base),
    publisher: res.headers.get('X-Oncolive-Publisher'),
  };
}

/**
 * The ICE part of a description as a trickle fragment (RFC 8840): credentials, then the first
 * media section (the one the others are bundled on) with its candidates.
 */
export function iceFragment(sdp) {
  const lines = sdp.split(/\r?\n/);
  const value = (key) => (lines.find((l) => l.startsWith(key)) || '').slice(key.length);
  let out = `a=ice-ufrag:${value('a=ice-ufrag:')}\r\na=ice-pwd:${value('a=ice-pwd:')}\r\n`;
  let section = 0;
  for (const line of lines) {
    if (line.startsWith('m=')) section += 1;
    const wanted = line.startsWith('m=') || line.startsWith('a=mid:')
      || line.startsWith('a=candidate:') || line === 'a=end-of-candidates';
    if (section === 1 && wanted) out += `${line}\r\n`;
  }
  return out;
}

/**
 * `sdp` (the answer held) with the relay's new credentials and candidates from the `200` of an
 * ICE restart instead of its own, one version later (RFC 9725 §4.3.3).
 */
export function withIce(sdp, fragment) {
  const frag = fragment.split(/\r?\n/);
  const value = (key) => (frag.find((l) => l.startsWith(key)) || '').slice(key.length);
  const candidates = frag.filter((l) => l.startsWith('a=candidate:'));
  const out = [];
  let section = 0;
  const addCandidates = () => out.push(...candidates, 'a=end-of-candidates');
  for (const line of sdp.split(/\r?\n/)) {
    if (line.startsWith('m=')) {
      if (section === 1) addCandidates();
      section += 1;
    }
    if (!line || line.startsWith('a=candidate:') || line === 'a=end-of-candidates') continue;
    if (line.startsWith('a=ice-ufrag:')) out.push(`a=ice-ufrag:${value('a=ice-ufrag:')}`);
    else if (line.startsWith('a=ice-pwd:')) out.push(`a=ice-pwd:${value('a=ice-pwd:')}`);
    else if (line.startsWith('o=')) {
      const f = line.split(' ');
      if (/^\d+$/.test(f[2] || '')) f[2] = String(BigInt(f[2]) + 1n);
      out.push(f.join(' '));
    } else out.push(line);
  }
  if (section === 1) addCandidates();
  return `${out.join('\r\n')}\r\n`;
}

function release(resource, token) {
  if (!resource) return;
  // keepalive lets the DELETE leave even while the page unloads
  fetch(resource, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` }, keepalive: true })
    .catch(() => {});
}

/**
 * Watch the session's video. States given to `onState`:
 * connecting, waiting (no publisher yet), playing, stalled (frames stopped; retrying), error.
 * It keeps trying by itself; call `kick()` to retry at once (e.g. when the session goes live).
 * `audioOnly` subscribes to the sound alone (an offer with no video section: the relay then
 * sends only Opus); `setAudioOnly()` switches with a new WHEP offer and a DELETE of the old one.
 */
export class Viewer {
  constructor({ sessionId, token, video, onState, audioOnly = false }) {
    this.sessionId = sessionId;
    this.token = token;
    this.video = video;
    this.onState = onState || (() => {});
    this.audioOnly = !!audioOnly;
    // what the last two watchdog reads saw of the picture: kbit/s received and frames/s decoded
    this.quality = { kbps: null, fps: null };
    this.lastRead = null;
    this.state = 'idle';
    this.pc = null;
    this.resource = null;
    this.timer = null;
    this.watchdog = null;
    this.attempt = 0;
    this.stopped = true;
    this.lastFrames = -1;
    this.stuckSince = 0;
    this.generation = 0;
    this.negotiating = 0;     // the generation whose offer is being made, 0 when none
    this.restarting = false;
    this.restartAgain = false; // the network changed while a restart was being made
    // the picture quality asked of the relay: auto, low (data saver) or high (WHEP layer extension)
    this.prefer = 'auto';
    this.layerUrl = null;  // the resource's layer URL (WHEP layer extension), from its `Link`
    this.layerCount = 0; // simulcast layers the relay reports for this resource
    this.layerTimer = null;
    this.settleTimer = null;
    this.onUnload = () => this.teardown();
    // A phone that changed networks (Wi-Fi ↔ mobile): restart ICE on the same WHEP resource,
    // once the events have settled. Offline there is nothing to gather on: `online` will come.
    this.onNetworkChange = () => {
      clearTimeout(this.settleTimer);
      if (navigator.onLine === false) return;
      this.settleTimer = setTimeout(() => {
        if (this.restarting) this.restartAgain = true;
        else this.restartIce();
      }, NETWORK_SETTLE_MS);
    };
    video.addEventListener('playing', () => { if (!this.audioOnly) this.sawFrames(); });
    video.addEventListener('resize', () => { if (video.videoWidth > 0 && !this.audioOnly) this.sawFrames(); });
  }

  setState(s) {
    if (s === this.state) return;
    this.state = s;
    this.onState(s);
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener('pagehide', this.onUnload);
    window.addEventListener('online', this.onNetworkChange);
    if (navigator.connection) navigator.connection.addEventListener('change', this.onNetworkChange);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('pagehide', this.onUnload);
    window.removeEventListener('online', this.onNetworkChange);
    if (navigator.connection) navigator.connection.removeEventListener('change', this.onNetworkChange);
    clearTimeout(this.timer);
    clearTimeout(this.settleTimer);
    this.teardown();
    this.setState('idle');
  }

  /**
   * Sound only, or sound and picture again: a new WHEP subscription with the sections wanted
   * (the old resource is deleted). The hub and every question are untouched.
   */
  setAudioOnly(on) {
    if (this.audioOnly === !!on) return;
    this.audioOnly = !!on;
    this.quality = { kbps: null, fps: null };
    if (this.stopped) return;
    this.attempt = 0;
    this.setState('connecting');
    this.connect();
  }

  /**
   * The patient's picture quality: 'auto' (what the link carries), 'low' (data saver) or 'high'.
   * The relay switches layers at the next keyframe, on the same connection.
   */
  setPrefer(prefer) {
    if (!['auto', 'low', 'high'].includes(prefer) || prefer === this.prefer) return;
    this.prefer = prefer;
    this.postPrefer();
  }

  /** How many layers the expert sends (the quality choice matters only with more than one). */
  async readLayers() {
    const layerUrl = this.layerUrl;
    if (!layerUrl || this.audioOnly) return;
    try {
      const res = await fetch(layerUrl, { headers: { Authorization: `Bearer ${this.token}` }, cache: 'no-store' });
      if (!res.ok || layerUrl !== this.layerUrl) return;
      const count = ((await res.json()).layers || []).length;
      if (count !== this.layerCount) {
        this.layerCount = count;
        this.onState(this.state);
      }
    } catch { /* not answered this time: the next look may be */ }
    // read once per resource: a request every few seconds on the WHEP resource would also
    // land mid-way through an ICE restart, and the relay's announced layers are known at once
  }

  /** Ask the relay for the patient's choice on this resource; a refusal leaves what it sends. */
  postPrefer() {
    if (!this.layerUrl || this.audioOnly) return;
    fetch(this.layerUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${this.token}` },
      body: JSON.stringify({ prefer: this.prefer }),
      cache: 'no-store',
    }).catch(() => {});
  }

  /** Retry now, unless a connection is up (a connected viewer gets the picture by itself). */
  kick() {
    if (this.stopped || this.state === 'playing') return;
    // an offer being made now is not thrown away for a new one (a round trip lost on a slow link)
    if (this.negotiating === this.generation) return;
    if (this.pc && (this.pc.connectionState === 'connected' || this.pc.connectionState === 'connecting')) return;
    this.attempt = 0;
    this.connect();
  }

  teardown() {
    clearInterval(this.watchdog);
    this.watchdog = null;
    clearTimeout(this.layerTimer);
    this.layerUrl = null;
    release(this.resource, this.token);
    this.resource = null;
    if (this.pc) {
      try { this.pc.close(); } catch { /* ignore */ }
      this.pc = null;
    }
  }

  retryLater(state) {
    this.teardown();
    this.setState(state);
    clearTimeout(this.timer);
    const base = Math.min(20000, 2000 * 2 ** this.attempt);
    this.attempt += 1;
    this.timer = setTimeout(() => this.connect(), base / 2 + Math.random() * base / 2);
  }

  connect() {
    return this.connectOnce().catch(() => {
      // an old browser missing part of WebRTC (addTransceiver, …): keep trying slowly
      if (!this.stopped) this.retryLater('error');
    });
  }

  async connectOnce() {
    clearTimeout(this.timer);
    this.teardown();
    if (this.stopped) return;
    if (typeof RTCPeerConnection === 'undefined') {
      this.setState('unsupported'); // questions still work; nothing to retry
      return;
    }
    const gen = ++this.generation;
    if (this.state !== 'waiting' && this.state !== 'stalled') this.setState('connecting');
    const url = `/api/sessions/${encodeURIComponent(this.sessionId)}/whep`;
    this.negotiating = gen;
    try {
      await this.negotiate(gen, url);
    } finally {
      if (this.negotiating === gen) this.negotiating = 0;
    }
  }

  async negotiate(gen, url) {
    const ice = await iceServers(url, this.token);
    if (gen !== this.generation || this.stopped) return;
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceServers: ice });
    this.pc = pc;
    if (!this.audioOnly) pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const stream = new MediaStream();
    pc.ontrack = (e) => {
      stream.addTrack(e.track);
      if (this.video.srcObject !== stream) this.video.srcObject = stream;
      this.play();
    };
    pc.onconnectionstatechange = () => {
      if (gen !== this.generation) return;
      if (pc.connectionState === 'disconnected') this.restartIce();
      if (pc.connectionState === 'failed' || pc.connectionState === 'closed') this.retryLater('stalled');
    };
    let result;
    try {
      result = await exchange(pc, url, this.token);
    } catch (err) {
      if (gen !== this.generation) return;
      // 404/409/503 from a relay that has no publisher or is not there yet: wait and retry
      // 400 (e.g. unsupported_codec), 401, 403, 410 will not change by retrying soon
      return this.retryLater([400, 401, 403, 410].includes(err.status) ? 'error' : 'waiting');
    }
    if (gen !== this.generation) {
      release(result.location, this.token);
      return;
    }
    this.resource = result.location;
    // a relay without the layer extension names no layer URL: no choice is offered or asked
    this.layerUrl = result.layer;
    if (!this.layerUrl) this.layerCount = 0;
    // a new resource starts on auto: ask again for what the patient chose
    if (this.prefer !== 'auto') this.postPrefer();
    this.readLayers();
    if (result.publisher === 'waiting') this.setState('waiting');
    this.lastFrames = -1;
    this.stuckSince = Date.now();
    this.watchdog = setInterval(() => this.watch(), 2000);
  }

  /**
   * ICE restart (RFC 9725 §4.3.3): new credentials in a `PATCH` with `If-Match: *`, the relay's
   * new ones from its `200`. Same resource, same tracks; the relay asks the expert's camera for a
   * keyframe once the new path is up. If the relay refuses, a fresh WHEP session is made. A
   * network change during the restart makes one more (its offer may name the old address).
   */
  async restartIce() {
    const pc = this.pc;
    const resource = this.resource;
    if (this.stopped || this.restarting || !pc || !resource || pc.signalingState !== 'stable') return;
    if (pc.connectionState === 'closed' || pc.connectionState === 'new') return;
    this.restarting = true;
    const gen = this.generation;
    try {
      await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
      await waitForIce(pc);
      const res = await fetch(resource, {
        method: 'PATCH',
        headers: {
          'Content-Type': 'application/trickle-ice-sdpfrag',
          'If-Match': '*',
          Authorization: `Bearer ${this.token}`,
        },
        body: iceFragment(pc.localDescription.sdp),
        cache: 'no-store',
      });
      if (res.status !== 200) throw new VideoError(res.status, res.statusText);
      const fragment = await res.text();
      if (gen !== this.generation || pc !== this.pc) return;
      await pc.setRemoteDescription({ type: 'answer', sdp: withIce(pc.remoteDescription.sdp, fragment) });
    } catch {
      if (gen === this.generation && !this.stopped) this.retryLater('stalled');
    } finally {
      this.restarting = false;
    }
    if (this.restartAgain) {
      this.restartAgain = false;
      await this.restartIce();
    }
  }

  play() {
    const p = this.video.play();
    if (!p || !p.catch) return;
    p.catch(() => {
      // Sound without a user gesture is refused: play muted; the page offers one tap for sound.
      if (!this.video.muted) {
        this.video.muted = true;
        this.video.play().catch(() => {});
      }
    });
  }

  sawFrames() {
    if (this.stopped || !this.pc) return;
    if (this.video.videoWidth > 0 || this.audioOnly) {
      this.attempt = 0;
      this.stuckSince = 0;
      this.setState('playing');
    }
  }

  /** kbit/s and frames/s of the picture since the last read (the page offers sound only on a weak link). */
  measure(now, frames, bytes) {
    const last = this.lastRead;
    this.lastRead = { at: now, frames, bytes, audioOnly: this.audioOnly };
    if (!last || last.audioOnly !== this.audioOnly || now <= last.at || this.audioOnly) return;
    const secs = (now - last.at) / 1000;
    this.quality = {
      kbps: Math.max(0, (bytes - last.bytes) * 8 / 1000 / secs),
      fps: Math.max(0, (frames - last.frames) / secs),
    };
  }

  /**
   * Are frames being decoded? (`currentTime` of a live stream runs on even when no frame
   * arrives, so the decoder's counter is asked.) When they stop while the connection is up,
   * the expert has left or not come yet: the relay keeps this viewer attached and the picture
   * comes back by itself, so we only wait. A connection that does not come up is retried.
   */
  async watch() {
    const pc = this.pc;
    if (!pc) return;
    let frames = -1;
    let bytes = 0;
    try {
      const stats = await pc.getStats();
      const kind = this.audioOnly ? 'audio' : 'video';
      stats.forEach((r) => {
        if (r.type !== 'inbound-rtp' || (r.kind || r.mediaType) !== kind) return;
        // sound has no frames: its packets count instead
        frames = Math.max(frames, (this.audioOnly ? r.packetsReceived : r.framesDecoded) || 0);
        bytes += r.bytesReceived || 0;
      });
    } catch { /* closed meanwhile */ }
    if (pc !== this.pc) return;
    const now = Date.now();
    this.measure(now, frames, bytes);
    if (frames > this.lastFrames && (this.video.videoWidth > 0 || this.audioOnly)) {
      this.lastFrames = frames;
      this.stuckSince = 0;
      if (this.state !== 'playing') this.sawFrames();
      return;
    }
    this.lastFrames = Math.max(this.lastFrames, frames);
    if (!this.stuckSince) this.stuckSince = now;
    if (pc.connectionState === 'connected') {
      if (now - this.stuckSince > 4000 && this.state !== 'waiting') this.setState('waiting');
      return;
    }
    const limit = pc.connectionState === 'disconnected' ? 8000 : 15000;
    if (now - this.stuckSince > limit) this.retryLater(this.state === 'playing' ? 'stalled' : 'waiting');
  }
}

/**
 * The video codecs in the order the relay should get them: H.264 with packetization-mode=1
 * first (baseline 42e01f before other profiles) when this browser can send it, so recordings are
 * MP4 that every phone plays; VP8 next (WebM recordings); the rest (RTX, RED, FEC, VP9, AV1, …)
 * after, in the browser's order. `sendable` are the sender's capabilities.
 */
export function orderCodecs(codecs, sendable = codecs) {
  const fmtp = (c) => c.sdpFmtpLine || '';
  const h264 = (c) => /^video\/h264$/i.test(c.mimeType) && /packetization-mode=1/.test(fmtp(c));
  const canH264 = sendable.some(h264);
  const rank = (c) => {
    if (canH264 && h264(c)) return /profile-level-id=42e01f/i.test(fmtp(c)) ? 0 : 1;
    if (/^video\/vp8$/i.test(c.mimeType)) return 2;
    return 3;
  };
  return codecs.map((c, i) => ({ c, i })).sort((a, b) => rank(a.c) - rank(b.c) || a.i - b.i).map((x) => x.c);
}

/** Ask for H.264 first (then VP8) on the expert's video, where the browser lets us. */
export function preferRecordable(transceiver) {
  if (!transceiver || typeof transceiver.setCodecPreferences !== 'function') return false;
  const caps = (side) => {
    try { return (side.getCapabilities && side.getCapabilities('video') || {}).codecs || []; } catch { return []; }
  };
  const send = typeof RTCRtpSender !== 'undefined' ? caps(RTCRtpSender) : [];
  const recv = typeof RTCRtpReceiver !== 'undefined' ? caps(RTCRtpReceiver) : [];
  // The spec checks the list against the receiver's capabilities in some versions and the
  // sender's in others: try one, then the other, and leave the default order if both refuse.
  for (const list of [recv, send]) {
    if (!list.length) continue;
    try {
      transceiver.setCodecPreferences(orderCodecs(list, send.length ? send : list));
      return true;
    } catch { /* the next list */ }
  }
  return false;
}

/**
 * Publish camera and microphone. `start(stream)` posts to WHIP; states given to `onState`:
 * idle, connecting, live, reconnecting, error.
 */
export class Publisher {
  constructor({ sessionId, token, onState }) {
    this.sessionId = sessionId;
    this.token = token;
    this.onState = onState || (() => {});
    this.state = 'idle';
    this.pc = null;
    this.resource = null;
    this.stream = null;
    this.timer = null;
    this.attempt = 0;
    this.wanted = false;
    this.generation = 0;
    this.lastError = null;
    window.addEventListener('pagehide', () => this.teardown());
  }

  setState(s) {
    this.state = s;
    this.onState(s);
  }

  async start(stream) {
    this.stream = stream;
    this.wanted = true;
    this.attempt = 0;
    return this.connect();
  }

  async connect() {
    clearTimeout(this.timer);
    this.teardown();
    if (!this.wanted) return;
    const gen = ++this.generation;
    this.setState(this.attempt ? 'reconnecting' : 'connecting');
    const url = `/api/sessions/${encodeURIComponent(this.sessionId)}/whip`;
    const ice = await iceServers(url, this.token);
    if (gen !== this.generation || !this.wanted) return;
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceServers: ice });
    this.pc = pc;
    for (const track of this.stream.getTracks()) {
      const transceiver = track.kind === 'video'
        ? addVideoTransceiver(pc, track, this.stream)
        : pc.addTransceiver(track, { direction: 'sendonly', streams: [this.stream] });
      if (track.kind === 'video') {
        preferRecordable(transceiver);
        keepResolution(transceiver.sender);
      }
    }
    pc.onconnectionstatechange = () => {
      if (gen !== this.generation) return;
      if (pc.connectionState === 'connected') {
        this.attempt = 0;
        // set again once negotiated: some browsers ignore it on a sender without encodings yet
        for (const sender of pc.getSenders()) if (sender.track && sender.track.kind === 'video') keepResolution(sender);
        this.setState('live');
      } else if (pc.connectionState === 'failed') {
        this.retry();
      }
    };
    try {
      const result = await exchange(pc, url, this.token);
      if (gen !== this.generation) {
        release(result.location, this.token);
        return;
      }
      this.resource = result.location;
      if (pc.connectionState === 'connected') this.setState('live');
    } catch (err) {
      if (gen !== this.generation) return;
      this.lastError = err;
      if (err.status === 401 || err.status === 403 || err.status === 410) {
        this.wanted = false;
        this.teardown();
        this.setState('error');
        return;
      }
      this.retry();
    }
  }

  retry() {
    this.teardown();
    this.setState('reconnecting');
    const base = Math.min(15000, 1000 * 2 ** this.attempt);
    this.attempt += 1;
    this.timer = setTimeout(() => this.connect(), base / 2 + Math.random() * base / 2);
  }

  /** Swap the camera without renegotiating. */
  async replaceVideoTrack(track) {
    if (!this.pc) return;
    const sender = this.pc.getSenders().find((s) => s.track && s.track.kind === 'video');
    if (sender) await sender.replaceTrack(track);
  }

  stop() {
    this.wanted = false;
    clearTimeout(this.timer);
    this.teardown();
    this.setState('idle');
  }

  teardown() {
    release(this.resource, this.token);
    this.resource = null;
    if (this.pc) {
      try { this.pc.close(); } catch { /* ignore */ }
      this.pc = null;
    }
  }
}
