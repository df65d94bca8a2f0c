// findings.js for a reader whose page is in Chinese (the language is chosen at load, so this
// file runs in its own process with the saved choice set first).
import './fake-browser.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';

globalThis.localStorage = { getItem: (k) => (k === 'oncolive.lang' ? 'zh' : null), setItem() {} };
const { warningText, reasonText } = await import('../assets/js/findings.js');

test('the warning in Chinese names each kind', () => {
  assert.equal(warningText([{ kind: 'phone', start: 4, end: 15 }]), '您的问题包含手机号，发送后将被隐藏。您可以修改后再发送。');
  const two = warningText([{ kind: 'id_number' }, { kind: 'phone' }]);
  assert.match(two, /^您的问题包含手机号.身份证号，发送后将被隐藏。/);
});

test('reasons in Chinese; the moderator’s own words unchanged', () => {
  assert.equal(reasonText({ reason_code: 'advertising' }), '含广告或推销');
  assert.equal(reasonText({ reason_code: 'off_topic', reason: 'Please ask your own doctor' }), '与本场主题无关：Please ask your own doctor');
});
