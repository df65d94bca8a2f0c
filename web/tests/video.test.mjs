// The patient's WHEP viewer on a network change: one ICE restart (a PATCH on the same resource)
// once the browser's burst of events has settled, none while offline, one more when the network
// changes again during a restart.
import { flush, resetBrowser } from './fake-browser.mjs';
import { test, mock, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Viewer, NETWORK_SETTLE_MS } from '../assets/js/video.js';

const OFFER = 'v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:new\r\na=ice-pwd:newpassword\r\na=mid:0\r\na=candidate:1 1 udp 1 198.51.100.2 5000 typ host\r\n';
const ANSWER = 'v=0\r\no=- 7 2 IN IP4 0.0.0.0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:old\r\na=ice-pwd:oldpassword\r\na=mid:0\r\n';
const RELAY_FRAGMENT = 'a=ice-ufrag:relay2\r\na=ice-pwd:relaypassword2\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=candidate:1 1 udp 1 198.51.100.1 6000 typ host\r\na=end-of-candidates\r\n';

/** A connected peer connection whose gathering is done at once. */
function fakePeerConnection() {
  return {
    signalingState: 'stable',
    connectionState: 'connected',
    iceGatheringState: 'complete',
    localDescription: { type: 'offer', sdp: OFFER },
    remoteDescription: { type: 'answer', sdp: ANSWER },
    offers: [],
    async createOffer(options) { this.offers.push(options); return { type: 'offer', sdp: OFFER }; },
    async setLocalDescription(d) { this.localDescription = d; },
    async setRemoteDescription(d) { this.remoteDescription = d; },
    addEventListener() {},
    removeEventListener() {},
  };
}

/** A viewer attached to a WHEP resource, and every request its `fetch` sends (each answered when the test says). */
function attachedViewer() {
  const requests = [];
  globalThis.fetch = (url, init) => new Promise((resolve) => {
    requests.push({ url, method: init.method || 'GET', headers: init.headers, body: init.body, answer: () => resolve({ status: 200, text: async () => RELAY_FRAGMENT }) });
  });
  const video = { addEventListener() {} };
  const viewer = new Viewer({ sessionId: 's1', token: 't', video });
  viewer.stopped = false;
  viewer.pc = fakePeerConnection();
  viewer.resource = 'http://oncolive.test/api/sessions/s1/whep/r1';
  return { viewer, requests };
}

beforeEach(() => {
  resetBrowser();
  mock.timers.enable({ apis: ['setTimeout'] });
});
afterEach(() => {
  mock.timers.reset();
  delete globalThis.fetch;
});

test('a burst of network events makes one ICE restart, a PATCH with If-Match: * on the same resource, once they settle', async () => {
  const { viewer, requests } = attachedViewer();
  // what Chromium fires when the phone's new address comes up: `online`, then connection changes
  viewer.onNetworkChange();
  mock.timers.tick(10);
  viewer.onNetworkChange();
  viewer.onNetworkChange();
  mock.timers.tick(NETWORK_SETTLE_MS - 1);
  await flush();
  assert.equal(requests.length, 0, 'not before the events have settled');
  mock.timers.tick(1);
  await flush();
  assert.equal(requests.length, 1);
  const [patch] = requests;
  assert.equal(patch.method, 'PATCH');
  assert.equal(patch.url, viewer.resource);
  assert.equal(patch.headers['If-Match'], '*');
  assert.equal(patch.headers['Content-Type'], 'application/trickle-ice-sdpfrag');
  assert.match(patch.body, /a=ice-ufrag:new\r\na=ice-pwd:newpassword\r\n/);
  assert.deepEqual(viewer.pc.offers, [{ iceRestart: true }]);
  patch.answer();
  await flush();
  await flush();
  assert.match(viewer.pc.remoteDescription.sdp, /a=ice-ufrag:relay2/);
  assert.match(viewer.pc.remoteDescription.sdp, /198\.51\.100\.1 6000/);
});

test('no restart while the browser is offline; the `online` event that follows makes it', async () => {
  const { viewer, requests } = attachedViewer();
  navigator.onLine = false;
  viewer.onNetworkChange(); // `offline`, and a connection change as the old address goes
  viewer.onNetworkChange();
  mock.timers.tick(5 * NETWORK_SETTLE_MS);
  await flush();
  assert.equal(requests.length, 0);
  navigator.onLine = true;
  viewer.onNetworkChange(); // `online`
  mock.timers.tick(NETWORK_SETTLE_MS);
  await flush();
  assert.equal(requests.length, 1);
});

test('a network change during a restart makes one more restart after it', async () => {
  const { viewer, requests } = attachedViewer();
  viewer.onNetworkChange();
  mock.timers.tick(NETWORK_SETTLE_MS);
  await flush();
  assert.equal(requests.length, 1);
  viewer.onNetworkChange(); // the network changes again while the PATCH is out
  viewer.onNetworkChange();
  mock.timers.tick(NETWORK_SETTLE_MS);
  await flush();
  assert.equal(requests.length, 1, 'never two restarts at once');
  requests[0].answer();
  for (let i = 0; i < 5; i += 1) await flush();
  assert.equal(requests.length, 2);
  requests[1].answer();
  for (let i = 0; i < 5; i += 1) await flush();
  assert.equal(requests.length, 2, 'one more, not one per event');
});

test('a stopped viewer makes no restart', async () => {
  const { viewer, requests } = attachedViewer();
  viewer.onNetworkChange();
  viewer.stop();
  mock.timers.tick(NETWORK_SETTLE_MS);
  await flush();
  assert.deepEqual(requests.map((r) => r.method), ['DELETE']);
});
