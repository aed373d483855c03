import { defineConfig } from '@playwright/test';

// The server under test: the release binary on the built site, on its own port.
const port = Number(process.env.TOKENLENS_TEST_PORT ?? 3199);

export default defineConfig({
  testDir: './tests',
  // Room for a busy machine: a test waits for the state it needs, never for a time; these
  // bound only how long a broken one hangs.
  timeout: 240_000,
  expect: { timeout: 60_000 },
  fullyParallel: false,
  workers: 1,
  reporter: [['list']],
  outputDir: './test-results',
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    viewport: { width: 1280, height: 900 },
    screenshot: 'only-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    },
  },
  // Every test shares from one address: lift the per-client share rate (10 a minute by
  // default) so that a retried test cannot trip it; share.spec.ts tests the limits on servers
  // of its own.
  webServer: {
    command: `../target/release/tokenlens-server --model smollm2-135m --model gemma3-270m --site-root ../target/site --addr 127.0.0.1:${port} --shares-per-minute 0`,
    url: `http://127.0.0.1:${port}/`,
    timeout: 60_000,
    reuseExistingServer: false,
    // One line per request at info would bury the tests' own output: warnings and errors.
    env: { RUST_LOG: 'warn' },
    stdout: 'pipe',
    stderr: 'pipe',
  },
});
