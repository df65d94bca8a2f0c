// i18n.js formatCountdown: the waiting page's countdown to the announced start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import './fake-browser.mjs';
import { formatCountdown } from '../assets/js/i18n.js';

test('hours, minutes and seconds, rounded up to the next second', () => {
  assert.equal(formatCountdown(90 * 60_000, 'far'), '01:30:00');
  assert.equal(formatCountdown(59_001, 'far'), '00:01:00');
  assert.equal(formatCountdown(1, 'far'), '00:00:01');
  assert.equal(formatCountdown(23 * 3600_000 + 59 * 60_000 + 59_000, 'far'), '23:59:59');
});

test('past the start it stays at zero; a day or more ahead it says how far instead', () => {
  assert.equal(formatCountdown(-5000, 'far'), '00:00:00');
  assert.equal(formatCountdown(86_400_000, 'in 1 day'), 'in 1 day');
});
