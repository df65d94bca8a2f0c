// site.js: the operator's settings, and the safety frame when they cannot be fetched.
import './fake-browser.mjs';
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { maskLicence, loadSite, resetSite, disclaimer, disclaimerIn, retentionDays, operatorName, triageReply, siteLoaded } from '../assets/js/site.js';

const SITE = {
  disclaimer: { zh: '仅供科普。', en: 'Education only.' },
  triage: { clinic: { zh: '请去门诊。', en: 'Please see a clinic.' }, urgent: { zh: '打120。', en: 'Call 120.' }, booking_url: 'https://hospital.example/book', hotline: '010-1234 5678' },
  retention_days: 14,
  operator: 'Hospital X',
};

function fakeFetch(...responses) {
  let i = 0;
  return async () => {
    const r = responses[Math.min(i++, responses.length - 1)];
    if (r instanceof Error) throw r;
    return { ok: r.status === 200, status: r.status, json: async () => r.body };
  };
}

beforeEach(() => resetSite());

test('without the settings the built-in texts stand in', async () => {
  assert.equal(await loadSite(fakeFetch(new TypeError('offline'))), null);
  assert.equal(siteLoaded(), false);
  assert.equal(disclaimer(), 'For health education only; not a substitute for seeing a doctor. In an emergency call 120.');
  assert.equal(disclaimerIn('zh'), '本直播仅供健康科普，不能替代面诊；急症请立即拨打120。');
  assert.equal(retentionDays(), 30);
  assert.equal(operatorName(), 'OncoLive');
  assert.match(triageReply('urgent').text, /Call 120 now/);
  assert.equal(triageReply('clinic').bookingUrl, null);
});

test('the operator’s texts in the reader’s language; a failed fetch is tried again', async () => {
  const fetch = fakeFetch({ status: 503 }, { status: 200, body: SITE });
  assert.equal(await loadSite(fetch), null);
  assert.deepEqual(await loadSite(fetch), SITE);
  assert.equal(disclaimer(), 'Education only.');
  assert.equal(disclaimerIn('zh'), '仅供科普。');
  assert.equal(retentionDays(), 14);
  assert.equal(operatorName(), 'Hospital X');
  assert.deepEqual(triageReply('clinic'), { text: 'Please see a clinic.', bookingUrl: 'https://hospital.example/book', hotline: '010-1234 5678' });
  assert.deepEqual(triageReply('urgent'), { text: 'Call 120.', bookingUrl: null, hotline: '010-1234 5678' });
});

test('a missing language or a link that is not http(s) is not shown', async () => {
  await loadSite(fakeFetch({ status: 200, body: { disclaimer: { zh: '仅供科普。' }, triage: { booking_url: 'javascript:alert(1)', hotline: '  ' } } }));
  assert.equal(disclaimer(), 'For health education only; not a substitute for seeing a doctor. In an emergency call 120.');
  assert.equal(triageReply('clinic').bookingUrl, null);
  assert.equal(triageReply('clinic').hotline, null);
  assert.match(triageReply('clinic').text, /book an outpatient visit/);
});

test('a licence shows only its last 4 characters, whether the server masked it or not', () => {
  assert.equal(maskLicence('110110000012345678'), '**************5678');
  assert.equal(maskLicence('**************5678'), '**************5678');
  assert.equal(maskLicence('医师12345'), '***2345');
  assert.equal(maskLicence('1234'), '****');
  assert.equal(maskLicence(null), '');
});
