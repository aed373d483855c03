// Steering in the page: the edits typed (or added from a unit's card) steer the answer, the
// original answer streams beside it with the same seed, both as the CLI generates them, and
// an answer token of the steered model is explained as the CLI explains it (issue 35).
import { test, expect } from '@playwright/test';
import * as path from 'node:path';
import { expectClose, generateGreedy, near, open, scores, segs, shares, shots, tokenlens } from './helpers';

const prompt = 'The capital of France is';
const steer = '0:1297*0,23:h4*0,29:1066=-5';

test('a steered answer beside the original, both the CLI\'s, explained under the edits', async ({ page }) => {
  test.setTimeout(180_000);
  await open(page, prompt);
  await page.locator('input[name=chat]').uncheck();
  // An edit that does not read says why.
  await page.locator('input[name=steer]').fill('23:h4');
  await page.locator('input[name=steer]').dispatchEvent('change');
  await expect(page.locator('[data-testid=steer-error]')).toContainText("one '*' or '='");
  await page.locator('input[name=steer]').fill(steer);
  await page.locator('input[name=steer]').dispatchEvent('change');
  await expect(page.locator('[data-testid=steer-error]')).toHaveCount(0);
  const ids = await generateGreedy(page, '12');
  await expect(page).toHaveURL(/steer=0%3A1297\*0%2C23%3Ah4\*0%2C29%3A1066%3D-5|steer=0:1297/);
  const want = tokenlens('generate', '--raw', '--prompt', prompt, '--greedy', '--max-new-tokens', '12', '--steer', steer);
  expect(ids).toEqual(want.steered.generated.map((g: any) => g.id));
  const original = page.locator('[data-testid=original-text]');
  await expect(original).toHaveText(want.original.answer, { timeout: 60_000 });
  expect(want.original.answer).not.toEqual(want.steered.answer);
  await page.screenshot({ path: path.join(shots, 'steer.png'), fullPage: true });

  // The steered answer's first token explained under the edits.
  await page.locator('.answer .ans-tok').first().click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const ex = tokenlens('explain', '--raw', '--prompt', prompt, '--greedy', '--max-new-tokens', '12', '--steer', steer, '--step', '1');
  expectClose(await scores(page), ex.methods.saliency.scores, 1e-4);

  // "Open it": the original model's view, its answer the original one.
  await page.locator('button[name=open_original]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page).not.toHaveURL(/steer=/);
  await expect(page.locator('input[name=steer]')).toHaveValue('');
  await expect(page.locator('[data-testid=original-answer]')).toHaveCount(0);
});

test('a unit\'s card puts its edit into the steering field', async ({ page }) => {
  await open(page, prompt);
  await page.locator('input[name=chat]').uncheck();
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await page.locator('input[name=inside]').check();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await page.locator('[data-testid=head-grid] rect.head[data-layer="23"][data-head="4"]').click();
  await expect(page.locator('[data-testid=unit-card]')).toContainText('Head 23:h4');
  await page.locator('button[name="steer-x0"]').click();
  await expect(page.locator('input[name=steer]')).toHaveValue('23:h4*0');
  await page.locator('button[name="steer-x2"]').click();
  await expect(page.locator('input[name=steer]')).toHaveValue('23:h4*2');
});

test('compare: the model before and after its edits, then under other edits, as the CLI explains each', async ({ page }) => {
  test.setTimeout(180_000);
  await open(page, prompt);
  await page.locator('input[name=chat]').uncheck();
  await page.locator('input[name=steer]').fill('23:h4*0');
  await page.locator('input[name=steer]').dispatchEvent('change');
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await page.locator('[data-testid=compare-unsteered]').click();
  await expect(page).toHaveURL(/\/compare\?/);
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  // Both sides explain the token the steered model predicts.
  const after = tokenlens('explain', '--raw', '--prompt', prompt, '--steer', '23:h4*0', '--methods', 'saliency');
  const id = String(after.target.id);
  const before = tokenlens('explain', '--raw', '--prompt', prompt, '--target-id', id, '--methods', 'saliency');
  near(await segs(page, 'data-a'), shares(before, 'saliency'));
  near(await segs(page, 'data-b'), shares(after, 'saliency'));
  await expect(page.locator('.cmp-label').nth(1)).toContainText('steered 23:h4*0');
  await expect(page.locator('.cmp-label').first()).not.toContainText('steered');
  // Two settings: B under another edit, still of A's token.
  await page.locator('[data-testid=side-b] input[name=steer]').fill('23:h4*5');
  await page.locator('[data-testid=side-b] input[name=steer]').dispatchEvent('change');
  await page.locator('button[name=compare]').click();
  await expect(page).toHaveURL(/b_steer=23%3Ah4\*5|b_steer=23:h4\*5/);
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  const five = tokenlens('explain', '--raw', '--prompt', prompt, '--steer', '23:h4*5', '--target-id', id, '--methods', 'saliency');
  near(await segs(page, 'data-b'), shares(five, 'saliency'));
  await expect(page.locator('.cmp-label').nth(1)).toContainText('steered 23:h4*5');
  await page.screenshot({ path: path.join(shots, 'compare-steer.png'), fullPage: true });
});
