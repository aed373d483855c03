// A method of several passes (integrated gradients) is one row of the registry: the page
// lists it, computes it only when it is picked (one run, then switching is a view again), and
// shows its completeness line; its scores are the CLI's.
import { test, expect } from '@playwright/test';
import * as path from 'node:path';
import { expectClose, open, scores, shots, tokenlens } from './helpers';

const prompt = 'The Eiffel Tower is located in the city of';

test('integrated gradients is computed when picked, with its completeness line', async ({ page }) => {
  const requests: string[] = [];
  page.on('request', (r) => {
    if (new URL(r.url()).pathname.endsWith('/explain')) requests.push(r.postData() ?? '');
  });
  await open(page, prompt);
  await page.locator('input[name=chat]').uncheck();
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  // The first run asks for the one-pass methods only.
  expect(requests.length).toBe(1);
  expect(requests[0]).not.toContain('integrated_gradients');
  const ig = page.locator('input[name=method][value=integrated_gradients]');
  await expect(ig).toBeVisible();
  const run = page.waitForRequest((r) => new URL(r.url()).pathname.endsWith('/explain'));
  await ig.check();
  await run;
  await expect(page.locator('[data-testid=conservation]')).toContainText('Completeness');
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  expect(requests.length).toBe(2);
  expect(requests[1]).toContain('integrated_gradients');
  await expect(page.locator('[data-testid=conservation]')).toContainText(/Completeness: inputs hold -?[0-9.]+% of the target's change along the path/);
  const want = tokenlens('explain', '--raw', '--prompt', prompt, '--methods', 'integrated_gradients');
  expectClose(await scores(page), want.methods.integrated_gradients.scores, 1e-4);
  await page.screenshot({ path: path.join(shots, 'integrated-gradients.png'), fullPage: true });
  // Back to a one-pass method and again to integrated gradients: views, no new run.
  await page.locator('input[name=method][value=attnlrp]').check();
  await expect(page.locator('[data-testid=conservation]')).toContainText('Conservation:');
  await ig.check();
  await expect(page.locator('[data-testid=conservation]')).toContainText('Completeness:');
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  expect(requests.length).toBe(2);
});
