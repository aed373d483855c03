// The form never loses what was typed (issue 34, item 1): the view asked for is the view
// shown, in the form, the result and the URL, and a reload shows it again.
import { test, expect } from '@playwright/test';
import * as path from 'node:path';
import { expectClose, scores, shots, tokenlens } from './helpers';

test('typing a prompt, unticking the template and explaining keeps all of it', async ({ page }) => {
  await page.goto('/?chat=1');
  await expect(page.locator('button[name=submit]')).toBeEnabled();
  await page.locator('textarea[name=prompt]').fill('The capital of France is');
  await page.locator('input[name=chat]').uncheck();
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  await expect(page.locator('[data-testid=prediction]')).toContainText('Paris');
  // The form, as typed.
  await expect(page.locator('textarea[name=prompt]')).toHaveValue('The capital of France is');
  await expect(page.locator('input[name=chat]')).not.toBeChecked();
  // The URL names it all, so that a reload or a shared link shows the same.
  const url = new URL(page.url());
  expect(url.searchParams.get('prompt')).toBe('The capital of France is');
  expect(url.searchParams.get('chat')).toBe('0');
  expect(url.searchParams.has('explain') || url.searchParams.has('target')).toBe(true);
  await page.reload();
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  await expect(page.locator('textarea[name=prompt]')).toHaveValue('The capital of France is');
  await expect(page.locator('input[name=chat]')).not.toBeChecked();
  await expect(page.locator('[data-testid=prediction]')).toContainText('Paris');
});

test('picking a base model keeps the prompt and explains on that model', async ({ page }) => {
  await page.goto('/?chat=1');
  await expect(page.locator('button[name=submit]')).toBeEnabled();
  const gemma = page.locator('select[name=model] option[value=gemma3-270m]');
  await expect(gemma).toBeEnabled({ timeout: 120_000 });
  await page.locator('textarea[name=prompt]').fill('The capital of France is');
  await page.locator('select[name=model]').selectOption('gemma3-270m');
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  await expect(page.locator('select[name=model]')).toHaveValue('gemma3-270m');
  await expect(page.locator('textarea[name=prompt]')).toHaveValue('The capital of France is');
  const url = new URL(page.url());
  expect(url.searchParams.get('model')).toBe('gemma3-270m');
  expect(url.searchParams.get('prompt')).toBe('The capital of France is');
});

// The first view teaches (issue 34, item 5): `/` shows a fact whose answer word is the
// target, explained with signed AttnLRP, as the CLI explains it.
test('the first view explains a fact with AttnLRP', async ({ page }) => {
  await page.goto('/');
  await expect(page.locator('button[name=submit]')).toBeEnabled();
  await expect(page.locator('select[name=model]')).toHaveValue('smollm2-135m');
  await expect(page.locator('textarea[name=prompt]')).toHaveValue('The capital of France is');
  await expect(page.locator('input[name=chat]')).not.toBeChecked();
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  await expect(page.locator('[data-testid=prediction]')).toContainText('Paris');
  await expect(page.locator('input[name=method][value=attnlrp]')).toBeChecked();
  const want = tokenlens('explain', '--raw', '--prompt', 'The capital of France is', '--methods', 'attnlrp');
  expect(want.target.text).toBe(' Paris');
  expectClose(await scores(page), want.methods.attnlrp.scores, 1e-4);
  await page.setViewportSize({ width: 1280, height: 1500 });
  await page.screenshot({ path: path.join(shots, 'first-view.png'), fullPage: false });
});
