import { test, expect } from '@playwright/test';
import * as path from 'node:path';
import { shots, tokenlens, expectClose, open, scores, generateGreedy } from './helpers';

const prompt = 'What is the capital of France?';
const maxNew = '8';
const methods = ['saliency', 'input_x_gradient', 'attnlrp', 'cp_lrp'];

test('a dragged answer span is explained and equals the CLI\'s --span; shift-click marks one too; a token\'s log-probability equals --score log_prob', async ({ page }) => {
  await open(page, prompt);
  const ids = await generateGreedy(page, maxNew);
  expect(ids.length).toBeGreaterThanOrEqual(4);

  // Drag from the answer's 2nd token to its 4th: the span 2:4.
  await page.locator('.ans-tok[data-step="1"]').dragTo(page.locator('.ans-tok[data-step="3"]'));
  await expect(page).toHaveURL(/span=2%3A4/);
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const want = tokenlens('explain', '--prompt', prompt, '--span', '2:4', '--greedy', '--max-new-tokens', maxNew,
    '--methods', methods.join(','));
  const line = page.locator('[data-testid=span-target]');
  await expect(line).toHaveAttribute('data-start', '1');
  await expect(line).toHaveAttribute('data-end', '4');
  await expect(line).toContainText('Σ log p');
  expect(Math.abs(Number(await line.getAttribute('data-log-prob')) - want.target.span.log_prob)).toBeLessThanOrEqual(1e-5);
  await expect(page.locator('[data-testid=span-tokens] li')).toHaveCount(3);
  await expect(page.locator('.ans-tok.in-span')).toHaveCount(3);
  // The context is the prompt and the answer before the span's last token.
  await expect(page.locator('.tokens .tok')).toHaveCount(want.tokens.length);
  for (const m of methods) {
    await page.locator(`input[name=method][value=${m}]`).check();
    expectClose(await scores(page), want.methods[m].scores);
  }
  await expect(page.locator('[data-testid=faith-span]')).toBeVisible();
  await page.screenshot({ path: path.join(shots, 'span.png'), fullPage: true });

  // Shift-click from the span's start marks another span, ending at the clicked token.
  await page.locator('.ans-tok[data-step="2"]').click({ modifiers: ['Shift'] });
  await expect(page).toHaveURL(/span=2%3A3/);
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page.locator('.ans-tok.in-span')).toHaveCount(2);

  // A click explains one token; its log-probability is a switch away.
  await page.locator('.ans-tok[data-step="2"]').click();
  await expect(page).not.toHaveURL(/span=/);
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await page.locator('input[name=score][value=log_prob]').check();
  await expect(page).toHaveURL(/score=log_prob/);
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const one = tokenlens('explain', '--prompt', prompt, '--step', '3', '--score', 'log_prob', '--greedy',
    '--max-new-tokens', maxNew, '--methods', methods.join(','));
  const note = page.locator('[data-testid=score-note]');
  expect(Math.abs(Number(await note.getAttribute('data-log-prob')) - one.target.log_prob)).toBeLessThanOrEqual(1e-5);
  for (const m of methods) {
    await page.locator(`input[name=method][value=${m}]`).check();
    expectClose(await scores(page), one.methods[m].scores);
  }
  // The span's first token's log-probability, given the same context, is the same number
  // the span listed for it.
  expect(Math.abs(one.target.log_prob - want.target.span.tokens[1].log_prob)).toBeLessThanOrEqual(1e-5);
});
