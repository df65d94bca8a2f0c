// The pages' WHIP/WHEP client (web/assets/js/video.js) against a stand-in relay: a blank
// Chromium page whose RTCPeerConnections answer the offers that Playwright routes to it. This
// checks the client's behaviour (non-trickle offers, "waiting" without re-posting, a publisher
// that stops and comes back, camera switch by replaceTrack) whether or not the real relay is
// mounted. The real relay is exercised by web.spec.mjs (and video.spec.mjs).
import { test, expect, createSession } from './server.mjs';

const PHONE = { viewport: { width: 360, height: 640 }, isMobile: true, hasTouch: true };

/** A one-room SFU in a page: the publisher's tracks are put on every viewer's senders. */
async function standInRelay(browser) {
  const page = await (await browser.newContext()).newPage();
  await page.goto('about:blank');
  await page.evaluate(() => {
    const relay = { tracks: {}, viewers: [], publisher: null, whepPosts: 0, whipPosts: 0 };
    const gathered = (pc) => new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') resolve(); });
    });
    const feed = () => {
      for (const pc of relay.viewers) {
        for (const tr of pc.getTransceivers()) {
          const kind = tr.receiver.track.kind;
          tr.sender.replaceTrack(relay.tracks[kind] || null);
        }
      }
    };
    relay.whip = async (offer) => {
      relay.whipPosts += 1;
      if (relay.publisher) relay.publisher.close();
      const pc = new RTCPeerConnection();
      relay.publisher = pc;
      pc.ontrack = (e) => { relay.tracks[e.track.kind] = e.track; feed(); };
      await pc.setRemoteDescription({ type: 'offer', sdp: offer });
      for (const tr of pc.getTransceivers()) tr.direction = 'recvonly';
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered(pc);
      return pc.localDescription.sdp;
    };
    relay.unpublish = () => {
      if (relay.publisher) relay.publisher.close();
      relay.publisher = null;
      relay.tracks = {};
      feed();
    };
    relay.whep = async (offer) => {
      relay.whepPosts += 1;
      const pc = new RTCPeerConnection();
      relay.viewers.push(pc);
      await pc.setRemoteDescription({ type: 'offer', sdp: offer });
      for (const tr of pc.getTransceivers()) tr.direction = 'sendonly';
      feed();
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered(pc);
      return { sdp: pc.localDescription.sdp, live: !!relay.tracks.video };
    };
    window.relay = relay;
  });

  /** Send a page's WHIP/WHEP requests to the stand-in. */
  async function attach(target) {
    await target.route(/\/api\/sessions\/[^/]+\/(whip|whep)(\/.*)?$/, async (route) => {
      const req = route.request();
      const kind = /\/whip/.test(req.url()) ? 'whip' : 'whep';
      if (req.method() === 'OPTIONS') return route.fulfill({ status: 204 });
      if (req.method() === 'DELETE') {
        if (kind === 'whip') await page.evaluate(() => window.relay.unpublish());
        return route.fulfill({ status: 200 });
      }
      expect(req.headers()['content-type']).toBe('application/sdp');
      expect(req.headers().authorization).toMatch(/^Bearer ./);
      // non-trickle: the offer already carries our candidates
      expect(req.postData()).toContain('a=candidate');
      if (kind === 'whip') {
        const sdp = await page.evaluate((o) => window.relay.whip(o), req.postData());
        return route.fulfill({ status: 201, headers: { 'Content-Type': 'application/sdp', Location: `${new URL(req.url()).pathname}/pub1` }, body: sdp });
      }
      const { sdp, live } = await page.evaluate((o) => window.relay.whep(o), req.postData());
      return route.fulfill({
        status: 201,
        headers: { 'Content-Type': 'application/sdp', Location: `${new URL(req.url()).pathname}/v1`, 'X-Oncolive-Publisher': live ? 'live' : 'waiting' },
        body: sdp,
      });
    });
  }
  const count = (what) => page.evaluate((w) => window.relay[w], what);
  return { attach, count };
}

async function expectFrames(page) {
  await expect.poll(() => page.$eval('#video', (v) => v.videoWidth), { timeout: 20_000 }).toBeGreaterThan(0);
  const t0 = await page.$eval('#video', (v) => v.currentTime);
  await expect.poll(() => page.$eval('#video', (v) => v.currentTime), { timeout: 10_000 }).toBeGreaterThan(t0 + 0.5);
}

/** The server's own relay; the pages' requests are only counted. */
function realRelay() {
  const counts = { whipPosts: 0, whepPosts: 0 };
  return {
    async attach(page) {
      page.on('request', (req) => {
        if (req.method() !== 'POST') return;
        if (/\/whip$/.test(req.url())) counts.whipPosts += 1;
        if (/\/whep$/.test(req.url())) counts.whepPosts += 1;
      });
    },
    count: async (what) => counts[what],
  };
}

test('stand-in relay: patient waits for the expert, then watches; expert stops and resumes', async ({ browser, server }) => {
  await scenario(browser, server, await standInRelay(browser));
});

test('real relay: patient waits for the expert, then watches; expert stops and resumes', async ({ browser, server, request }) => {
  const probe = await request.post(`${server.url}/api/sessions/${server.session_id}/whep`, { headers: { 'Content-Type': 'application/sdp' }, data: 'v=0' });
  test.skip(probe.status() === 404 || probe.status() === 405, 'the server does not mount the relay');
  await scenario(browser, server, realRelay());
});

async function scenario(browser, server, relay) {
  const { session, links } = await createSession(server, { title: 'Player test' });
  // live before anyone publishes: the patient must wait on its connection
  const res = await fetch(`${server.url}/api/sessions/${session.id}/state`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${server.admin_token}` },
    body: JSON.stringify({ state: 'live' }),
  });
  expect(res.status).toBe(200);

  const patientCtx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  const patient = await patientCtx.newPage();
  await relay.attach(patient);
  await patient.goto(links.patient);
  await patient.click('#join-btn');
  await expect(patient.locator('#v-title')).toHaveText('Waiting for the expert');

  const expertCtx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const expert = await expertCtx.newPage();
  await relay.attach(expert);
  await expert.goto(links.expert);
  await expect(expert.locator('#btn-live')).toHaveText('Resume broadcast');
  await expert.click('#btn-live');
  await expect(expert.locator('#pub-status')).toHaveText('Broadcasting.');
  await expect(expert.locator('#badge-live')).toBeVisible();

  // the picture arrives on the connection the patient already has
  await expectFrames(patient);
  await expect(patient.locator('#v-overlay')).toBeHidden();
  await expect(patient.locator('#unmute')).toBeVisible();
  expect(await relay.count('whepPosts')).toBe(1);

  // mic, camera and switching do not disturb the viewer
  await expert.click('#btn-mic');
  await expect(expert.locator('#btn-mic')).toHaveText('Unmute mic');
  await expert.click('#btn-switch');
  await expectFrames(patient);

  // the expert stops: the patient waits again, then the picture comes back
  expert.once('dialog', (d) => d.accept());
  await expert.click('#btn-live');
  await expect(expert.locator('#pub-status')).toHaveText('Not broadcasting.');
  await expect(patient.locator('#v-title')).toHaveText('Waiting for the expert', { timeout: 15_000 });
  await expert.click('#btn-live');
  await expectFrames(patient);
  await expect(patient.locator('#v-overlay')).toBeHidden();
  expect(await relay.count('whipPosts')).toBe(2);
  expect(await relay.count('whepPosts')).toBe(1);
  await patientCtx.close();
  await expertCtx.close();
}
