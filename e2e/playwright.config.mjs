// Browser tests with Debian's chromium (never a downloaded browser). Run inside a loopback-only
// network namespace: unshare -n sh -c 'ip link set lo up; cd e2e && npx playwright test'
import { execSync } from 'node:child_process';
import { defineConfig } from '@playwright/test';

function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  try {
    return execSync('command -v chromium', { shell: '/bin/sh' }).toString().trim();
  } catch {
    return '/usr/bin/chromium';
  }
}

export default defineConfig({
  testDir: '.',
  testMatch: /.*\.spec\.mjs$/,
  workers: 1,
  fullyParallel: false,
  timeout: 180_000,
  expect: { timeout: 15_000 },
  outputDir: '../artifacts/test-results',
  reporter: [['list']],
  use: {
    headless: true,
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: chromiumPath(),
      args: [
        '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--use-fake-device-for-media-stream',
        '--use-fake-ui-for-media-stream', '--allow-loopback-in-peer-connection',
        // LocalNetworkAccessChecks: pages fulfilled from the checkout (server.mjs) would otherwise count as
        // public and be refused their socket to 127.0.0.1.
        '--disable-features=WebRtcHideLocalIpsWithMdns,LocalNetworkAccessChecks',
      ],
    },
  },
  projects: [{ name: 'chromium', use: { browserName: 'chromium' } }],
});
