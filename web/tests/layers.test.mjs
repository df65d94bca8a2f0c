// Simulcast on the pages: the expert's camera goes out in three layers (one where the browser
// refuses), and a patient's picture quality is posted to the WHEP resource's layer URL, again
// after every new resource.
import { resetBrowser } from './fake-browser.mjs';
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Viewer, LAYERS, addVideoTransceiver } from '../assets/js/video.js';

beforeEach(() => resetBrowser());
afterEach(() => { delete globalThis.fetch; });

function recordingFetch() {
  const requests = [];
  globalThis.fetch = async (url, init) => {
    requests.push({ url, method: init.method, headers: init.headers, body: init.body });
    return { status: 200, ok: true };
  };
  return requests;
}

function viewer() {
  const v = new Viewer({ sessionId: 's1', token: 'tok', video: { addEventListener() {} } });
  v.stopped = false;
  return v;
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

test('a chosen quality is posted to the layer URL of the resource', async () => {
  const requests = recordingFetch();
  const v = viewer();
  v.resource = 'http://oncolive.test/api/sessions/s1/whep/r1';
  v.setPrefer('low');
  v.setPrefer('low'); // unchanged: nothing more
  v.setPrefer('best'); // not a choice
  assert.equal(requests.length, 1);
  assert.equal(requests[0].url, 'http://oncolive.test/api/sessions/s1/whep/r1/layer');
  assert.equal(requests[0].method, 'POST');
  assert.equal(requests[0].headers.Authorization, 'Bearer tok');
  assert.equal(requests[0].headers['Content-Type'], 'application/json');
  assert.deepEqual(JSON.parse(requests[0].body), { prefer: 'low' });
  v.setPrefer('auto');
  assert.deepEqual(JSON.parse(requests[1].body), { prefer: 'auto' });
});

test('before a resource nothing is posted; each new resource gets the choice again, auto needs none', () => {
  const requests = recordingFetch();
  const v = viewer();
  v.setPrefer('high');
  assert.equal(requests.length, 0);
  for (const r of ['r1', 'r2']) {
    v.resource = `http://oncolive.test/api/sessions/s1/whep/${r}`;
    v.postPrefer();
  }
  assert.deepEqual(requests.map((q) => q.url), [
    'http://oncolive.test/api/sessions/s1/whep/r1/layer',
    'http://oncolive.test/api/sessions/s1/whep/r2/layer',
  ]);
  v.audioOnly = true;
  v.postPrefer();
  assert.equal(requests.length, 2, 'sound only has no picture to choose');
});
