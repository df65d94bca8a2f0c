// Simulcast on the pages: the expert's camera goes out in three layers (one where the browser
// refuses), and a patient's picture quality is posted to the WHEP resource's layer URL, again
// after every new resource.
import { resetBrowser } from './fake-browser.mjs';
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Viewer, LAYERS, LAYER_REL, addVideoTransceiver, linkWithRel, seedIceServers } from '../assets/js/video.js';

beforeEach(() => {
  resetBrowser();
  globalThis.RTCPeerConnection = FakePeerConnection;
  globalThis.MediaStream = class { addTrack() {} };
});
afterEach(() => {
  delete globalThis.fetch;
  delete globalThis.RTCPeerConnection;
  delete globalThis.MediaStream;
});

const WHEP = 'http://oncolive.test/api/sessions/s1/whep';
const ANSWER = 'v=0\r\no=- 7 2 IN IP4 0.0.0.0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n';

/** A peer connection that is connected at once (what the viewer's negotiation touches). */
class FakePeerConnection {
  constructor() {
    this.connectionState = 'connected';
    this.signalingState = 'stable';
    this.iceGatheringState = 'complete';
    this.localDescription = null;
  }
  addTransceiver() { return { sender: {} }; }
  async createOffer() { return { type: 'offer', sdp: 'v=0\r\n' }; }
  async setLocalDescription(d) { this.localDescription = d; }
  async setRemoteDescription(d) { this.remoteDescription = d; }
  addEventListener() {}
  removeEventListener() {}
  close() { this.connectionState = 'closed'; }
}

/**
 * A relay as `fetch`: every WHEP POST makes a new resource (r1, r2, …) whose 201 names its layer
 * URL in a `Link` (none with `layerLink: false`, as an older relay); layer URLs answer `layers`.
 */
function fakeRelay({ layerLink = true, layers = 3, layerStatus = 200 } = {}) {
  const requests = [];
  let resources = 0;
  globalThis.fetch = async (url, init = {}) => {
    const method = init.method || 'GET';
    requests.push({ url: String(url), method, headers: init.headers || {}, body: init.body });
    if (method === 'POST' && /\/whep$/.test(url)) {
      resources += 1;
      const location = `/api/sessions/s1/whep/r${resources}`;
      const headers = new Map([['location', location]]);
      if (layerLink) {
        headers.set('link', `<${location}/ice>; rel="ice-server", <${location}/layer>; rel="urn:ietf:params:whep:ext:core:layer"`);
      }
      return { status: 201, ok: true, headers: { get: (k) => headers.get(k.toLowerCase()) ?? null }, text: async () => ANSWER };
    }
    if (/\/layer$/.test(url)) {
      const body = { prefer: 'auto', current: 'l', target: null, layers: Array.from({ length: layers }, (_, i) => ({ rid: 'lmh'[i], bitrate_bps: 100_000 * (i + 1) })) };
      return { status: layerStatus, ok: layerStatus === 200, json: async () => body };
    }
    return { status: 200, ok: true, headers: { get: () => null }, text: async () => '' };
  };
  return requests;
}

const layerPosts = (requests) => requests.filter((r) => r.method === 'POST' && /\/layer$/.test(r.url));

/** A patient's viewer as patient.js makes it: the stored choice given before it connects. */
async function connectedViewer(prefer, options = {}) {
  seedIceServers('/api/sessions/s1/whep', []);
  const v = new Viewer({ sessionId: 's1', token: 'tok', video: { addEventListener() {}, play() {} }, ...options });
  if (prefer) v.setPrefer(prefer);
  v.start();
  await until(() => v.resource);
  return v;
}

/** Let the viewer's promises run until `ready()` holds. */
async function until(ready) {
  for (let i = 0; i < 50 && !ready(); i += 1) await new Promise((r) => setImmediate(r));
  assert.ok(ready(), 'never happened');
}

test('the camera is sent in three layers, lowest first', () => {
  const calls = [];
  const pc = { addTransceiver: (track, init) => { calls.push(init); return { sender: {} }; } };
  addVideoTransceiver(pc, { kind: 'video' }, {}, true);
  assert.deepEqual(calls[0].sendEncodings.map((e) => e.rid), ['l', 'm', 'h']);
  assert.deepEqual(calls[0].sendEncodings.map((e) => e.scaleResolutionDownBy), [4, 2, 1]);
  assert.ok(calls[0].sendEncodings.every((e, i) => i === 0 || e.maxBitrate > calls[0].sendEncodings[i - 1].maxBitrate));
  assert.equal(LAYERS.length, 3);
});

test('without the expert asking for layers, one layer', () => {
  const calls = [];
  const pc = { addTransceiver: (track, init) => { calls.push(init); return { sender: {} }; } };
  addVideoTransceiver(pc, { kind: 'video' }, {});
  assert.equal(calls[0].sendEncodings, undefined);
});

test('a browser that refuses simulcast sends one layer', () => {
  const calls = [];
  const pc = {
    addTransceiver: (track, init) => {
      if (init.sendEncodings) throw new Error('InvalidAccessError');
      calls.push(init);
      return { sender: {} };
    },
  };
  addVideoTransceiver(pc, { kind: 'video' }, {}, true);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].sendEncodings, undefined);
});

test('a stored choice is posted to the layer URL the new resource names, once it is there', async () => {
  const requests = fakeRelay();
  const v = await connectedViewer('low');
  assert.equal(v.layerUrl, `${WHEP}/r1/layer`);
  const posts = layerPosts(requests);
  assert.equal(posts.length, 1);
  assert.equal(posts[0].url, `${WHEP}/r1/layer`);
  assert.equal(posts[0].headers.Authorization, 'Bearer tok');
  assert.equal(posts[0].headers['Content-Type'], 'application/json');
  assert.deepEqual(JSON.parse(posts[0].body), { prefer: 'low' });
  // nothing was posted before the resource existed
  const whep = requests.findIndex((r) => r.method === 'POST' && /\/whep$/.test(r.url));
  assert.ok(requests.indexOf(posts[0]) > whep);
  v.stop();
});

test('every change is posted to the current resource; the same choice twice or a wrong one is not', async () => {
  const requests = fakeRelay();
  const v = await connectedViewer(null);
  assert.equal(layerPosts(requests).length, 0, 'auto is where a new resource starts: nothing to ask');
  v.setPrefer('high');
  v.setPrefer('high');
  v.setPrefer('best');
  v.setPrefer('auto');
  assert.deepEqual(layerPosts(requests).map((r) => JSON.parse(r.body).prefer), ['high', 'auto']);
  v.stop();
});

test('a new resource (sound only and back, a reconnect) gets the choice again', async () => {
  const requests = fakeRelay();
  const v = await connectedViewer('high');
  v.setAudioOnly(true);
  await until(() => v.resource && v.resource.endsWith('/r2'));
  assert.equal(layerPosts(requests).length, 1, 'sound only has no picture to choose');
  v.setAudioOnly(false);
  await until(() => v.resource && v.resource.endsWith('/r3'));
  v.connect(); // what a reconnect does
  await until(() => v.resource && v.resource.endsWith('/r4'));
  assert.deepEqual(layerPosts(requests).map((r) => [r.url, JSON.parse(r.body).prefer]), [
    [`${WHEP}/r1/layer`, 'high'],
    [`${WHEP}/r3/layer`, 'high'],
    [`${WHEP}/r4/layer`, 'high'],
  ]);
  v.stop();
});

test('the relay reports the layers: the choice is offered only with more than one', async () => {
  fakeRelay({ layers: 3 });
  let v = await connectedViewer(null);
  await until(() => v.layerCount === 3);
  v.stop();
  fakeRelay({ layers: 1 });
  v = await connectedViewer(null);
  await new Promise((r) => setImmediate(r));
  assert.equal(v.layerCount, 1);
  v.stop();
});

test('an older relay (no layer link) is asked nothing; a refusal of the POST is silent', async () => {
  let requests = fakeRelay({ layerLink: false });
  let v = await connectedViewer('low');
  assert.equal(v.layerUrl, null);
  assert.equal(requests.filter((r) => /\/layer$/.test(r.url)).length, 0);
  assert.equal(v.layerCount, 0);
  v.stop();
  requests = fakeRelay({ layerStatus: 404 });
  v = await connectedViewer('low');
  v.setPrefer('high');
  assert.equal(layerPosts(requests).length, 2);
  assert.equal(v.state === 'error', false);
  v.stop();
});

test('the Link header: the layer relation among others, resolved against the request', () => {
  const header = '<stun:stun.example.net>; rel="ice-server", </api/sessions/s1/whep/r9/layer>; rel="urn:ietf:params:whep:ext:core:layer"';
  assert.equal(linkWithRel(header, LAYER_REL, WHEP), `${WHEP}/r9/layer`);
  assert.equal(linkWithRel('<x>; rel="ice-server"', LAYER_REL, WHEP), null);
  assert.equal(linkWithRel(null, LAYER_REL, WHEP), null);
});
