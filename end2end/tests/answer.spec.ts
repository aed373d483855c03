// A given answer (forced decoding): typed instead of sampled, then explained as a generated
// answer is, with the same numbers as the CLI's `--answer`.
import { test, expect } from '@playwright/test';
import * as path from 'node:path';
import { shots, tokenlens, unfold, expectClose, scores } from './helpers';

const prompt = 'The capital of France is';
const answer = ' Paris, a city on the Seine.';

test('a given answer is explained token by token, all steps too, and survives a reload', async ({ page }) => {
  await page.goto('/?chat=0&query_only=0');
  await expect(page.locator('button[name=generate]')).toBeEnabled();
  await page.locator('textarea[name=prompt]').fill(prompt);
  await (await unfold(page)).locator('textarea[name=answer]').fill(answer);
  await expect(page.locator('button[name=generate]')).toHaveText('Use given answer');
  // Nothing is sampled: the sampling settings are off.
  await expect(page.locator('input[name=temperature]')).toBeDisabled();
  await expect(page.locator('input[name=greedy]')).toBeDisabled();
  await page.locator('button[name=generate]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const cli = tokenlens('explain', '--prompt', prompt, '--raw', '--answer', answer, '--methods', 'saliency');
  const want = cli.generation.generated;
  const toks = page.locator('.answer .ans-tok');
  const ids = await toks.evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-token-id'))));
  expect(ids).toEqual(want.map((t: any) => t.id));
  await expect(page.locator('.answer-section h2')).toContainText('Given answer');
  await expect(page.locator('[data-testid=answer-meta]')).toContainText('the given answer');
  expect(new URL(page.url()).searchParams.get('answer')).toBe(answer);

  // The All-steps matrix equals the CLI's rows.
  await page.locator('button[name=all_steps]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  const n = ids.length;
  for (const step of [0, n - 1]) {
    expectClose(await scores(page, `rect.mcell[data-step="${step}"]`), cli.steps[step].scores.saliency);
  }
  await page.screenshot({ path: path.join(shots, 'given-answer.png'), fullPage: true });

  // One token of it: explained against the prompt and the given tokens before it.
  await toks.nth(2).click();
  await expect(page).toHaveURL(/[?&]step=2/);
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const step3 = tokenlens('explain', '--prompt', prompt, '--raw', '--answer', answer, '--step', '3', '--methods', 'saliency');
  await expect(page.locator('.tokens .tok')).toHaveCount(step3.tokens.length);

  // A reload (and so a shared link) shows the same answer, the same step, the form with it.
  await page.reload();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page.locator('textarea[name=answer]')).toHaveValue(answer);
  expect(await page.locator('.answer .ans-tok').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-token-id'))))).toEqual(ids);
  expectClose(await scores(page), step3.methods.saliency.scores);

  // At 400 px the field and the answer wrap within the page.
  await page.setViewportSize({ width: 400, height: 900 });
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  expect(width).toBeLessThanOrEqual(400);
  await page.screenshot({ path: path.join(shots, 'given-answer-400.png'), fullPage: true });
  await page.setViewportSize({ width: 1400, height: 900 });

  // Emptied, the button generates again.
  await page.locator('textarea[name=answer]').fill('');
  await expect(page.locator('button[name=generate]')).toHaveText('Generate');
  await expect(page.locator('input[name=temperature]')).toBeEnabled();
});

test('query only shows an answer step with the user\'s text and the answer so far; faithfulness moves the answer too', async ({ page }) => {
  const question = 'What is the capital of France?';
  const given = 'The capital of France is Paris.';
  await page.goto('/?chat=1');
  await expect(page.locator('button[name=generate]')).toBeEnabled();
  await page.locator('textarea[name=prompt]').fill(question);
  await (await unfold(page)).locator('textarea[name=answer]').fill(given);
  await page.locator('button[name=generate]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  // " Paris": answer token 6, after "The capital of France is".
  await page.locator('.answer .ans-tok[data-step="5"]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page.locator('input[name=query_only]')).toBeChecked();
  const cli = tokenlens('explain', '--prompt', question, '--answer', given, '--step', '6', '--methods', 'saliency',
    '--faithfulness', '--query-only');
  const [a] = cli.query_span;
  const n = cli.tokens.length;
  // The user's text, the template between it and the answer, and the 5 answer tokens before.
  const toks = page.locator('.tokens .tok');
  await expect(toks).toHaveCount(n - a);
  const generated = await toks.evaluateAll((els) => els.filter((e) => e.classList.contains('gen')).length);
  expect(generated).toBe(5);
  expectClose(await scores(page), cli.methods.saliency.scores.slice(a));
  // Hover ranks among what is shown.
  await toks.last().hover();
  await expect(page.locator('[data-testid=tooltip]')).toContainText(new RegExp(`rank \\d+ of ${n - a}\\)`));
  // The curves take the answer's tokens out too, as the CLI's --query-only does.
  await page.locator('[data-testid=faith-on]').check();
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  const eligible: number[] = cli.faithfulness.eligible;
  expect(eligible.some((i) => cli.tokens[i].generated)).toBe(true);
  await expect(page.locator('[data-testid=faith-measured]')).toHaveAttribute('data-eligible', String(eligible.length));
  await expect(page.locator('[data-testid=faith-measured]')).toContainText('the answer so far');
  await page.screenshot({ path: path.join(shots, 'answer-step-query-only.png'), fullPage: true });
});
