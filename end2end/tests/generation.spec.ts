import { test, expect, Page } from '@playwright/test';
import * as path from 'node:path';
import { cli, shots, tokenlens, unfold, expectClose, open, scores, generateGreedy as generateAt } from './helpers';
const prompt = 'What is the capital of France? Answer in one sentence.';
const maxNew = '12';

/** Generates greedily; returns the answer's token ids as the page shows them. */
async function generateGreedy(page: Page): Promise<number[]> {
  return generateAt(page, maxNew);
}

test('the answer streams token by token and greedy equals the engine', async ({ page }) => {
  await open(page, 'Write a short poem about the sea.');
  // Record how many answer tokens the page shows after each DOM change.
  await page.evaluate(() => {
    const w = window as any;
    w.__counts = [];
    new MutationObserver(() => {
      const n = document.querySelectorAll('.answer .ans-tok').length;
      if (w.__counts[w.__counts.length - 1] !== n) w.__counts.push(n);
    }).observe(document.body, { childList: true, subtree: true });
  });
  await (await unfold(page)).locator('input[name=max_new_tokens]').fill('40');
  await (await unfold(page)).locator('input[name=max_new_tokens]').dispatchEvent('change');
  await (await unfold(page)).locator('input[name=seed]').fill('7');
  await (await unfold(page)).locator('input[name=seed]').dispatchEvent('change');
  await page.locator('button[name=generate]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const counts: number[] = await page.evaluate(() => (window as any).__counts);
  const final = await page.locator('.answer .ans-tok').count();
  expect(final).toBeGreaterThan(5);
  // Streamed: the page showed several partial answers before the whole one.
  expect(counts.filter((c) => c > 0 && c < final).length).toBeGreaterThanOrEqual(3);
  // Sampling with a seed is reproducible: the CLI with the same settings agrees.
  const sampled = tokenlens('generate', '--prompt', 'Write a short poem about the sea.', '--max-new-tokens', '40', '--seed', '7');
  const ids = await page.locator('.answer .ans-tok').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-token-id'))));
  expect(ids).toEqual(sampled.generated.map((t: any) => t.id));
  await expect(page.locator('[data-testid=answer-meta]')).toContainText('stopped');

  await page.locator('textarea[name=prompt]').fill(prompt);
  const greedy = await generateGreedy(page);
  const want = tokenlens('generate', '--prompt', prompt, '--greedy', '--max-new-tokens', maxNew);
  expect(greedy).toEqual(want.generated.map((t: any) => t.id));
  await page.screenshot({ path: path.join(shots, 'answer.png'), fullPage: true });
});

test('what is typed before the page is live is kept, and its buttons wait', async ({ page }) => {
  // Hold the wasm back, so the page stays server-rendered while the fields are filled.
  let release = () => {};
  const held = new Promise<void>((r) => (release = r));
  await page.route('**/pkg/*.wasm', async (route) => {
    await held;
    await route.continue();
  });
  await page.goto('/?chat=1', { waitUntil: 'domcontentloaded' });
  const text = 'Write a short poem about the sea.';
  await page.locator('textarea[name=prompt]').fill(text);
  await (await unfold(page)).locator('input[name=max_new_tokens]').fill('12');
  await (await unfold(page)).locator('input[name=seed]').fill('7');
  await (await unfold(page)).locator('input[name=temperature]').fill('0.9');
  await expect(page.locator('button[name=generate]')).toBeDisabled();
  await expect(page.locator('button[name=submit]')).toBeDisabled();
  release();
  await expect(page.locator('button[name=generate]')).toBeEnabled();
  // Hydrating did not put the defaults back over the edits, and the page's state has them.
  await expect(page.locator('textarea[name=prompt]')).toHaveValue(text);
  await expect((await unfold(page)).locator('input[name=seed]')).toHaveValue('7');
  // Fields left alone are not taken for edits.
  await expect((await unfold(page)).locator('input[name=top_p]')).toHaveValue('0.8');
  await page.locator('button[name=generate]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const ids = await page.locator('.answer .ans-tok').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-token-id'))));
  const want = tokenlens('generate', '--prompt', text, '--max-new-tokens', '12', '--seed', '7', '--temperature', '0.9');
  expect(ids).toEqual(want.generated.map((t: any) => t.id));
  expect(ids.length).toBe(12);
  expect(page.url()).toContain('seed=7');
});

test('clicking an answer token explains it against everything before it', async ({ page }) => {
  await open(page, prompt);
  const ids = await generateGreedy(page);
  expect(ids.length).toBeGreaterThanOrEqual(4);
  await page.locator('.answer .ans-tok[data-step="3"]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page.locator('.answer .ans-tok[data-step="3"]')).toHaveClass(/selected/);
  await expect(page.locator('[data-testid=prediction]')).toContainText('Answer token 4');
  // The context is the prompt and the three tokens generated before it.
  await expect(page.locator('.tokens .tok.gen')).toHaveCount(3);
  const want = tokenlens('explain', '--prompt', prompt, '--greedy', '--max-new-tokens', maxNew, '--step', '4',
    '--methods', 'saliency,attnlrp');
  expect(want.target.id).toBe(ids[3]);
  await expect(page.locator('[data-testid=target]')).toContainText(`id ${ids[3]}`);
  expectClose(await scores(page), want.methods.saliency.scores);
  await page.locator('input[name=method][value=attnlrp]').check();
  expectClose(await scores(page), want.methods.attnlrp.scores);
  await page.screenshot({ path: path.join(shots, 'step.png'), fullPage: true });
});

test('all steps: a matrix of every answer token against its context', async ({ page }) => {
  await open(page, prompt);
  const ids = await generateGreedy(page);
  const tokens = page.locator('.tokens .tok');
  await page.locator('button[name=all_steps]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  const first = tokenlens('explain', '--prompt', prompt, '--greedy', '--max-new-tokens', maxNew, '--step', '1',
    '--methods', 'saliency');
  const p = first.tokens.length;
  const n = ids.length;
  // Row k has the prompt's p tokens and the k answer tokens before it.
  const cells = page.locator('[data-testid=matrix] rect.mcell');
  await expect(cells).toHaveCount(n * p + (n * (n - 1)) / 2);
  for (const step of [0, n - 1]) {
    const row = await scores(page, `rect.mcell[data-step="${step}"]`);
    const want = step === 0 ? first : tokenlens('explain', '--prompt', prompt, '--greedy', '--max-new-tokens', maxNew,
      '--step', String(step + 1), '--methods', 'saliency');
    expectClose(row, want.methods.saliency.scores);
  }
  await page.locator(`rect.mcell[data-step="${n - 1}"][data-token-index="${p}"]`).hover();
  await expect(page.locator('[data-testid=tooltip]')).toContainText(`step ${n} ←`);
  expect(await tokens.count()).toBe(0); // the matrix needs no single explanation
  await page.screenshot({ path: path.join(shots, 'matrix.png'), fullPage: true });
  // Explaining one answer token beside the matrix keeps the matrix: no second all-steps run.
  const stepsRuns: string[] = [];
  page.on('request', (r) => {
    if (new URL(r.url()).pathname.includes('steps')) stepsRuns.push(r.url());
  });
  await page.locator('.ans-tok[data-step="1"]').click();
  await expect(page).toHaveURL(/[?&]step=1/);
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(tokens.first()).toBeVisible();
  await expect(cells).toHaveCount(n * p + (n * (n - 1)) / 2);
  expect(stepsRuns).toEqual([]);
});

test('a candidate click shows its explanation at once (explained with the target), then the sealed one', async ({ page }) => {
  const q = 'What is the capital of France?';
  await open(page, q);
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await page.locator('input[name=method][value=attnlrp]').check();
  const alt = page.locator('.top-k li').nth(2);
  const altId = Number(await alt.locator('.candidate').getAttribute('data-token-id'));
  const want = tokenlens('explain', '--prompt', q, '--methods', 'attnlrp', '--target-id', String(altId));
  // Hold the request for the new view until released: what shows before then was already here.
  let release: () => void = () => {};
  const held = new Promise<void>((r) => (release = r));
  await page.route('**/api/explain', async (route) => {
    await held;
    await route.continue();
  });
  const clicked = Date.now();
  await alt.locator('.candidate').click();
  await expect(page.locator('[data-testid=prediction]')).toContainText(`id ${altId}`);
  expectClose(await scores(page), want.methods.attnlrp.scores, 1e-5);
  const shownMs = Date.now() - clicked;
  await expect(alt.locator('.candidate')).toHaveClass(/chosen/);
  await page.screenshot({ path: path.join(shots, 'candidate-instant.png'), fullPage: true });
  release();
  // The request's own (sealed) result replaces it: same numbers, and Share works.
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  expectClose(await scores(page), want.methods.attnlrp.scores, 1e-5);
  // Back to the first candidate: instant as well (the old target rides along).
  await page.unroute('**/api/explain');
  const first = Number(await page.locator('.top-k li').nth(0).locator('.candidate').getAttribute('data-token-id'));
  await page.route('**/api/explain', () => {}); // never answered
  await page.locator('.top-k li').nth(0).locator('.candidate').click();
  await expect(page.locator('[data-testid=prediction]')).toContainText(`id ${first}`);
  console.log(`candidate shown ${shownMs} ms after the click`);
});

test('contrastive target: why the target rather than an alternative', async ({ page }) => {
  const q = 'What is the capital of France?';
  await open(page, q);
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await page.locator('input[name=method][value=input_x_gradient]').check();
  const alt = page.locator('.top-k li').nth(1);
  const altId = Number(await alt.locator('.candidate').getAttribute('data-token-id'));
  await alt.locator('.versus').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page.locator('[data-testid=contrast]')).toContainText(`id ${altId}`);
  await expect(alt.locator('.versus')).toHaveClass(/chosen/);
  // Gradients are linear: scores(A − B) = scores(A) − scores(B), from the CLI.
  const a = tokenlens('explain', '--prompt', q, '--methods', 'input_x_gradient');
  const b = tokenlens('explain', '--prompt', q, '--methods', 'input_x_gradient', '--target-id', String(altId));
  const diff = a.methods.input_x_gradient.scores.map((x: number, i: number) => x - b.methods.input_x_gradient.scores[i]);
  expectClose(await scores(page), diff, 1e-3);
  // Typed: the form's "rather than" field.
  await page.locator('input[name=target]').fill(' The');
  await page.locator('input[name=contrast]').fill(' Paris');
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const typed = tokenlens('explain', '--prompt', q, '--methods', 'input_x_gradient', '--target', ' The', '--contrast', ' Paris');
  await expect(page.locator('[data-testid=contrast]')).toContainText(`id ${typed.target.contrast.id}`);
  expectClose(await scores(page), typed.methods.input_x_gradient.scores);
  await page.screenshot({ path: path.join(shots, 'contrast.png'), fullPage: true });
});

test('word and sentence views aggregate scores; the grid and colors follow', async ({ page }) => {
  const q = 'Paris is lovely. Why do people visit France? Give two reasons.';
  await open(page, q);
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const tokenScores = await scores(page);
  const total = tokenScores.reduce((s, x) => s + x, 0);
  const layers = Number(await page.locator('rect.cell').count()) / tokenScores.length;
  for (const level of ['word', 'sentence']) {
    await page.locator('select[name=granularity]').selectOption(level);
    const want = tokenlens('explain', '--prompt', q, '--granularity', level);
    await expect(page.locator('.tokens .tok')).toHaveCount(want.granularity.groups.length);
    const got = await scores(page);
    expectClose(got, want.granularity.scores.saliency);
    // Sums conserve the total.
    expect(Math.abs(got.reduce((s, x) => s + x, 0) - total)).toBeLessThanOrEqual(1e-3 * Math.abs(total));
    await expect(page.locator('rect.cell')).toHaveCount(layers * got.length);
  }
  await expect(page.locator('.tokens .tok').filter({ hasText: 'Why do people visit France?' })).toHaveCount(1);
  await page.locator('select[name=aggregate]').selectOption('max_abs');
  const want = tokenlens('explain', '--prompt', q, '--granularity', 'sentence', '--aggregate', 'max_abs');
  expectClose(await scores(page), want.granularity.scores.saliency);
  await page.screenshot({ path: path.join(shots, 'sentences.png'), fullPage: true });

  // Color controls: absolute values, a percentile clip, gamma; the colorbar follows.
  await page.locator('select[name=granularity]').selectOption('token');
  await page.locator('input[name=method][value=attnlrp]').check();
  const bar = page.locator('.token-section .colorbar');
  await expect(bar).toHaveAttribute('data-signed', 'true');
  await page.locator('input[name=absolute]').check();
  await expect(bar).toHaveAttribute('data-signed', 'false');
  // Every token in the scale (sinks too), as the percentile below is taken over all.
  await page.locator('input[name=sinks_out]').uncheck();
  const max0 = Number(await bar.getAttribute('data-max'));
  await page.locator('select[name=clip]').selectOption('p90');
  const abs = (await scores(page)).map(Math.abs).sort((x, y) => x - y);
  const p90 = abs[Math.ceil(0.9 * abs.length) - 1];
  await expect(bar).toHaveAttribute('data-max', String(p90));
  expect(p90).toBeLessThan(max0);
  const tok = page.locator('.tokens .tok').nth(Math.floor(abs.length / 2));
  const before = await tok.evaluate((e) => getComputedStyle(e).backgroundColor);
  await page.locator('input[name=gamma]').fill('0.4');
  await expect(bar).toHaveAttribute('data-gamma', '0.4');
  const after = await tok.evaluate((e) => getComputedStyle(e).backgroundColor);
  expect(after).not.toBe(before);
});

test('bad generation settings get a message, never a silent change', async ({ page }) => {
  await page.goto('/?prompt=Hi&generate=1&temperature=-1&max_new=3');
  // The run the link asks for is refused by the server, in the same words as the form's.
  await expect(page.locator('[data-testid=error]')).toContainText('temperature must be 0 (greedy) or positive, not -1');
  await expect(page.locator('button[name=submit]')).toBeEnabled();
  // The setting is shown as it is: not turned into "greedy".
  await expect((await unfold(page)).locator('input[name=greedy]')).not.toBeChecked();
  await expect((await unfold(page)).locator('input[name=temperature]')).toHaveValue('-1');
  const message = page.locator('[data-testid=gen-error]');
  await expect(message).toHaveText('temperature must be 0 (greedy) or positive, not -1');
  await expect(page.locator('button[name=generate]')).toBeDisabled();
  const set = async (name: string, value: string) => {
    await page.locator(`input[name=${name}]`).fill(value);
    await page.locator(`input[name=${name}]`).dispatchEvent('change');
  };
  await set('temperature', '0.5');
  await expect(message).toHaveCount(0);
  await expect(page.locator('button[name=generate]')).toBeEnabled();
  await set('top_p', '1.5');
  await expect(message).toHaveText('top-p must be in (0, 1], not 1.5');
  await set('top_p', '0.9');
  await set('max_new_tokens', '0');
  await expect(message).toHaveText('max new tokens must be at least 1');
  await set('max_new_tokens', '4');
  await expect(message).toHaveCount(0);
  await page.locator('button[name=generate]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page).toHaveURL(/temperature=0.5/);
});

test('an answer step names the token the answer has there and, apart, the most likely one; a target of several tokens says which is explained', async ({ page }) => {
  // A hot sampler, seeded: some answer token is not the model's most likely one.
  await page.goto(`/?prompt=${encodeURIComponent('Name a color.')}&generate=1&temperature=1.5&sample_top_k=50&top_p=1&seed=3&max_new=10`);
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const answer = page.locator('.answer .ans-tok');
  const n = await answer.count();
  const heading = page.locator('[data-testid=heading]');
  let found = false;
  for (let k = 0; k < n && !found; k++) {
    await answer.nth(k).click();
    await expect(page.locator('[data-testid=status]')).toHaveText('done');
    const text = (await answer.nth(k).getAttribute('data-text')) ?? (await answer.nth(k).innerText());
    await expect(heading).toContainText(`Answer token ${k + 1}: `);
    const [g, b] = [await heading.getAttribute('data-generated'), await heading.getAttribute('data-best')];
    if (g !== b) {
      found = true;
      await expect(heading).toContainText('the most likely token there was');
      // "Explaining" names the answer's token, not the most likely one.
      await expect(page.locator('[data-testid=target]')).toContainText(`(id ${g},`);
      expect(text.length).toBeGreaterThan(0);
      await page.locator('.prediction').screenshot({ path: path.join(shots, 'sampled-step.png') });
    } else {
      await expect(heading).toContainText('also the most likely token');
    }
  }
  expect(found, 'a sampled token that is not the most likely one').toBe(true);

  await open(page, 'The capital of France is');
  await page.locator('input[name=target]').fill(' Paris Hilton');
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const split = page.locator('[data-testid=target-split]');
  await expect(split).toContainText('explaining the first of them, " Paris"');
  expect(Number(await split.getAttribute('data-pieces'))).toBeGreaterThan(1);
});

test('legends say how the grid and the matrix are colored; the matrix scrolls into view and can print its values', async ({ page }) => {
  await page.setViewportSize({ width: 1400, height: 700 });
  await page.goto(`/?prompt=${encodeURIComponent('Name a color.')}&generate=1&greedy=1&max_new=4`);
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await page.locator('.answer .ans-tok').nth(1).click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const layers = page.locator('[data-testid=layer-legend]');
  await expect(layers).toContainText('Each layer on its own scale');
  // Saliency (the default method) colors its tokens unsigned, its grid signed: said so.
  await expect(layers).toContainText('unsigned score (viridis)');
  await expect(page.locator('.grid-section .colorbar')).toHaveAttribute('data-signed', 'true');
  await page.locator('input[name=method][value=attnlrp]').check();
  await expect(layers).not.toContainText('viridis');

  await page.evaluate(() => window.scrollTo(0, 0));
  await page.locator('button[name=all_steps]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page.locator('[data-testid=matrix]')).toBeInViewport();
  await expect(page.locator('[data-testid=row-legend]')).toContainText('Each row on its own scale');
  const cells = page.locator('[data-testid=matrix] rect.mcell');
  await expect(page.locator('[data-testid=matrix] text.mval')).toHaveCount(0);
  await page.locator('input[name=cell_values]').check();
  await expect(page.locator('[data-testid=matrix] text.mval')).toHaveCount(await cells.count());
  await page.locator('.matrix-section').screenshot({ path: path.join(shots, 'matrix-values.png') });
});
