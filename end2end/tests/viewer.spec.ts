import { test, expect, Page } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..', '..');
const cli = path.join(root, 'target', 'release', 'tokenlens');
const shots = path.join(__dirname, '..', 'test-results', 'screenshots');

/** The engine's JSON for a prompt, from the CLI. */
function engineJson(prompt: string, methods: string): any {
  const out = execFileSync(cli, ['explain', '--prompt', prompt, '--methods', methods, '--json'], {
    encoding: 'utf8',
  });
  return JSON.parse(out);
}

/** Explains `prompt` showing every token (the default shows only the user's text). */
async function explain(page: Page, prompt: string) {
  await page.goto('/?query_only=0');
  // Live: the buttons are off in the server-rendered page until the wasm has hydrated it.
  await expect(page.locator('button[name=submit]')).toBeEnabled();
  await expect(page.locator('select[name=model]')).toHaveValue('smollm2-135m');
  await page.locator('textarea[name=prompt]').fill(prompt);
  await page.locator('button[name=submit]').click();
}

async function scoresOnPage(page: Page): Promise<number[]> {
  return page.locator('.tokens .tok').evaluateAll((els) =>
    els.map((e) => Number(e.getAttribute('data-score'))),
  );
}

function expectClose(got: number[], want: number[], rel = 1e-4) {
  expect(got.length).toBe(want.length);
  const scale = Math.max(...want.map(Math.abs));
  const worst = Math.max(...got.map((g, i) => Math.abs(g - want[i])));
  expect(worst / scale).toBeLessThanOrEqual(rel);
}

test('streams tokens colored with the engine\'s saliency scores', async ({ page }) => {
  const prompt = 'What is the capital of France?';
  await explain(page, prompt);
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const want = engineJson(prompt, 'saliency');
  const spans = page.locator('.tokens .tok');
  await expect(spans).toHaveCount(want.tokens.length);
  expectClose(await scoresOnPage(page), want.methods.saliency.scores);
  // Each span is colored, and shows its token's text.
  const first = spans.nth(want.query_span[0]);
  await expect(first).toHaveText(want.tokens[want.query_span[0]].text);
  expect(await first.evaluate((e) => getComputedStyle(e).backgroundColor)).not.toBe('rgba(0, 0, 0, 0)');
  await expect(page.locator('[data-testid=prediction]')).toContainText(want.prediction.text);
  await page.screenshot({ path: path.join(shots, 'saliency.png'), fullPage: true });
});

test('hover shows the exact score; switching method re-colors without a reload', async ({ page }) => {
  const prompt = 'The Eiffel Tower is in the city of';
  await explain(page, prompt);
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const want = engineJson(prompt, 'saliency,attnlrp');
  await page.evaluate(() => ((window as any).__marker = 'same page'));

  const i = want.query_span[0] + 1;
  await page.locator(`.tokens .tok[data-token-index="${i}"]`).hover();
  const tip = page.locator('[data-testid=tooltip]');
  await expect(tip).toBeVisible();
  const s = want.methods.saliency.scores[i];
  await expect(tip).toContainText(Number(s.toPrecision(3)).toString().replace(/^0\./, '0.').slice(0, 4));
  await expect(tip).toContainText(`id ${want.tokens[i].id}`);

  await page.locator('input[name=method][value=attnlrp]').check();
  expectClose(await scoresOnPage(page), want.methods.attnlrp.scores);
  await expect(page.locator('.token-section .colorbar')).toHaveAttribute('data-signed', 'true');
  expect(await page.evaluate(() => (window as any).__marker)).toBe('same page');
  await page.screenshot({ path: path.join(shots, 'attnlrp.png'), fullPage: true });
});

test('the grid has n_layers × n_tokens cells with the trace values', async ({ page }) => {
  const prompt = 'I have 5 cats and 3 dogs. My cats love to play with my';
  await explain(page, prompt);
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const want = engineJson(prompt, 'saliency');
  const n = want.tokens.length;
  const cells = page.locator('[data-testid=grid] rect.cell');
  await expect(cells).toHaveCount(want.n_layers * n);
  const l = 10, t = n - 2;
  const cell = page.locator(`rect.cell[data-layer="${l}"][data-token-index="${t}"]`);
  const v = Number(await cell.getAttribute('data-score'));
  const ref = want.methods.saliency.trace[l][t];
  expect(Math.abs(v - ref)).toBeLessThanOrEqual(1e-4 * Math.max(...want.methods.saliency.trace[l].map(Math.abs)));
  // Hovering a cell highlights its token, and hovering a token highlights its column.
  await cell.hover();
  await expect(page.locator('[data-testid=tooltip]')).toContainText(`layer ${l}`);
  await expect(page.locator(`.tokens .tok[data-token-index="${t}"]`)).toHaveClass(/hovered/);
  await page.locator(`.tokens .tok[data-token-index="${t - 1}"]`).hover();
  await expect(page.locator('rect.column-highlight')).toHaveCount(1);
  // "query only" narrows the tokens and the grid to the user's text.
  await page.locator('input[name=query_only]').check();
  const [a, b] = want.query_span;
  await expect(cells).toHaveCount(want.n_layers * (b - a));
  await expect(page.locator('.tokens .tok')).toHaveCount(b - a);
  await page.screenshot({ path: path.join(shots, 'grid.png'), fullPage: true });
});

test('errors are shown as readable messages', async ({ page }) => {
  await explain(page, '');
  await expect(page.locator('[data-testid=error]')).toContainText('the prompt is empty');
  await expect(page.locator('button[name=submit]')).toBeEnabled();
  // Longer than the model's context: refused by the engine, reported in the page.
  await page.locator('textarea[name=prompt]').fill('a '.repeat(9000));
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=error]')).toContainText(/more than the \d+ this model accepts/);
  await expect(page.locator('[data-testid=status]')).not.toHaveClass(/running/);
  // A good request afterwards clears the error.
  await page.locator('textarea[name=prompt]').fill('Hello');
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page.locator('[data-testid=error]')).toHaveCount(0);
});

test('settings out of range are refused with 400 before any work', async ({ page }) => {
  // A huge top_k once cost a softmax over the vocabulary per candidate on the only worker.
  const cases: [string, any, string][] = [
    ['explain', { prompt: 'Hello', top_k: 100000000 }, 'top_k must be between 1 and 100'],
    ['explain', { prompt: 'Hello', top_k: 0 }, 'top_k must be between 1 and 100'],
    ['explain', { prompt: 'Hello', methods: ['attnlrp', 'attnlrp'] }, 'method attnlrp is requested twice'],
    ['generate', { prompt: 'Hello', sampling: { temperature: -1, top_k: 20, top_p: 0.8, seed: 0 } }, 'temperature must be 0'],
    ['generate', { prompt: 'Hello', max_new_tokens: 0 }, 'max new tokens must be at least 1'],
    ['steps', { prompt: 'Hello', generated: [] }, 'no generated tokens'],
  ];
  for (const [route, request, message] of cases) {
    const r = await page.request.post(`/api/${route}`, { data: { model: '', request } });
    expect(r.status(), `${route} ${JSON.stringify(request)}`).toBe(400);
    expect(await r.text()).toContain(message);
  }
});

test('a request that waits for the model shows its place in line', async ({ page }) => {
  await page.goto('/?chat=1');
  await expect(page.locator('button[name=submit]')).toBeEnabled();
  await page.locator('textarea[name=prompt]').fill('Hello');
  // Another client's long job takes the model first (several seconds on this machine).
  const long = page.request.post('/api/explain', {
    data: { model: '', request: { prompt: 'The quick brown fox jumps over the lazy dog. '.repeat(15),
      chat_template: false, methods: ['saliency', 'attnlrp', 'cp_lrp'] } },
  });
  // Once the worker runs it (the server's own gauge says so), ours must wait.
  await expect.poll(async () => /^tokenlens_running_jobs 1$/m.test(await (await page.request.get('/metrics')).text()),
    { timeout: 120_000 }).toBe(true);
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toContainText(/waiting for the model: (1st|2nd) in line/);
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  expect((await long).status()).toBe(200);
});

test('HTML in the prompt renders literally', async ({ page }) => {
  let dialogs = 0;
  page.on('dialog', (d) => { dialogs++; d.dismiss(); });
  const prompt = "<script>alert('x')</script><b>bold</b> & <i>more</i>";
  await explain(page, prompt);
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const text = await page.locator('.tokens').innerText();
  expect(text).toContain("<script>alert('x')</script><b>bold</b> & <i>more</i>");
  await expect(page.locator('.tokens b, .tokens script, .tokens i')).toHaveCount(0);
  expect(dialogs).toBe(0);
});

test('after a cancel nothing says "computing", and Share waits for a complete result', async ({ page }) => {
  const passage = 'The printing press changed how texts were copied, checked and sold across Europe. ';
  await explain(page, passage.repeat(40));
  // Cancel once the tokens are in and the methods are still computing.
  await expect(page.locator('[data-testid=waiting]')).toContainText('computing');
  await page.locator('button[name=cancel]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('cancelled');
  await expect(page.getByText(/computing/)).toHaveCount(0);
  await expect(page.locator('[data-testid=waiting]')).toContainText('not computed');
  await expect(page.locator('label.method.pending')).toHaveCount(0);
  await expect(page.locator('button[name=share]')).toBeDisabled();
  await page.screenshot({ path: path.join(shots, 'cancelled.png'), fullPage: true });
  // A complete run makes it shareable.
  await page.locator('textarea[name=prompt]').fill('Hello');
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  await expect(page.locator('button[name=share]')).toBeEnabled();
});

test('cancel stops waiting for a running explanation', async ({ page }) => {
  const passage = 'The printing press changed how texts were copied, checked and sold across Europe. ';
  await explain(page, passage.repeat(8));
  const cancel = page.locator('button[name=cancel]');
  await expect(cancel).toBeEnabled();
  await cancel.click();
  await expect(page.locator('[data-testid=status]')).toHaveText('cancelled');
  await expect(page.locator('button[name=submit]')).toBeEnabled();
  await expect(cancel).toBeDisabled();
  // The page takes a new request afterwards.
  await page.locator('textarea[name=prompt]').fill('Hello');
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  await expect(page.locator('.tokens .tok[data-score]').first()).toBeVisible();
});

test('Gemma 3 270M is selectable beside SmolLM2 and explains with the engine\'s scores', async ({ page }) => {
  await page.goto('/?chat=1');
  const gemma = page.locator('select[name=model] option[value="gemma3-270m"]');
  // Loaded in the background after the default model; the picker lists it when ready.
  await expect(gemma).toBeEnabled({ timeout: 120_000 });
  await expect(gemma).toContainText('18 layers');
  await page.locator('select[name=model]').selectOption('gemma3-270m');
  // A base model without a chat template: the template switch turns off.
  await expect(page.locator('input[name=chat]')).not.toBeChecked();
  const prompt = 'The Eiffel Tower is located in the city of';
  await page.locator('textarea[name=prompt]').fill(prompt);
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  const want = JSON.parse(execFileSync(cli, ['explain', '--model', 'gemma3-270m', '--raw', '--prompt', prompt,
    '--methods', 'saliency,attnlrp', '--json'], { encoding: 'utf8' }));
  await expect(page.locator('[data-testid=prediction]')).toContainText(want.prediction.text);
  expectClose(await scoresOnPage(page), want.methods.saliency.scores);
  await page.locator('input[name=method][value=attnlrp]').check();
  expectClose(await scoresOnPage(page), want.methods.attnlrp.scores);
  await expect(page.locator('rect.cell')).toHaveCount(18 * want.tokens.length);
  await page.screenshot({ path: path.join(shots, 'gemma.png'), fullPage: true });
});

test('thinking: the URL parameter sets the switch, the run and its JSON export carry it', async ({ page }) => {
  const prompt = 'Why is the sea salty?';
  await page.goto(`/?prompt=${encodeURIComponent(prompt)}&thinking=1`);
  await expect(page.locator('button[name=submit]')).toBeEnabled();
  await expect(page.locator('input[name=thinking]')).toBeChecked();
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  expect(new URL(page.url()).searchParams.get('thinking')).toBe('1');
  const [d] = await Promise.all([page.waitForEvent('download'), page.locator('button[name=export_json]').click()]);
  const json = JSON.parse(fs.readFileSync((await d.path())!, 'utf8'));
  expect(json.thinking).toBe(true);
  // SmolLM2's template has no enable_thinking: the same tokens as the CLI's, with --thinking.
  const cli = JSON.parse(execFileSync(path.join(root, 'target', 'release', 'tokenlens'),
    ['explain', '--prompt', prompt, '--thinking', '--methods', 'saliency', '--json'], { encoding: 'utf8' }));
  expect(cli.thinking).toBe(true);
  expect(json.tokens).toEqual(cli.tokens);
  // Without the chat template the switch means nothing and is off limits.
  await page.locator('input[name=chat]').uncheck();
  await expect(page.locator('input[name=thinking]')).toBeDisabled();
});

test('a long pass shows its progress bar, gone when done', async ({ page }) => {
  const sentence =
    'The river bends past the old mill, where the miller counts sacks of grain and tells the children stories about the winter of the great flood. ';
  await explain(page, sentence.repeat(14));
  // Mid-pass the status carries a bar (layers done), e.g. during a backward pass.
  const bar = page.getByTestId('progress');
  await expect(bar).toBeVisible({ timeout: 20_000 });
  const value = Number(await bar.getAttribute('value'));
  expect(value).toBeGreaterThanOrEqual(0);
  expect(value).toBeLessThan(1);
  await expect(page.getByTestId('status')).toContainText(/pass.*%/);
  fs.mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, 'progress.png') });
  await expect(page.getByTestId('status')).toHaveText('done', { timeout: 120_000 });
  await expect(bar).toHaveCount(0);
});

/** Spearman's ρ with average ranks for ties (the page's definition, computed here on the
 * CLI's scores). */
function spearman(a: number[], b: number[]): number {
  const ranks = (v: number[]) => {
    const idx = v.map((_, i) => i).sort((i, j) => v[i] - v[j]);
    const r = new Array(v.length).fill(0);
    for (let k = 0; k < idx.length; ) {
      let end = k + 1;
      while (end < idx.length && v[idx[end]] === v[idx[k]]) end++;
      for (let m = k; m < end; m++) r[idx[m]] = (k + end + 1) / 2;
      k = end;
    }
    return r;
  };
  const [ra, rb] = [ranks(a), ranks(b)];
  const mean = (a.length + 1) / 2;
  let num = 0, da = 0, db = 0;
  for (let i = 0; i < a.length; i++) {
    num += (ra[i] - mean) * (rb[i] - mean);
    da += (ra[i] - mean) ** 2;
    db += (rb[i] - mean) ** 2;
  }
  return num / Math.sqrt(da * db);
}

test('the sink toggle rescales colors without recomputing; method agreement equals the CLI scores\' ρ', async ({ page }) => {
  const prompt = 'What is the capital of France?';
  await explain(page, prompt);
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const want = engineJson(prompt, 'saliency,attnlrp');
  await page.locator('input[name=method][value=attnlrp]').check();
  await page.evaluate(() => ((window as any).__marker = 'same page'));
  const colors = () =>
    page.locator('.tokens .tok').evaluateAll((els) => els.map((e) => getComputedStyle(e).backgroundColor));
  const scores = await scoresOnPage(page);
  const legendMax = () => page.locator('.token-section .colorbar').getAttribute('data-max');
  // Sinks out is the default: off first, then on again.
  await page.locator('input[name=sinks_out]').uncheck();
  await expect(page).toHaveURL(/sinks_out=0/);
  const maxBefore = Number(await legendMax());
  const before = await colors();

  await page.locator('input[name=sinks_out]').check();
  await expect(page).not.toHaveURL(/sinks_out/);
  // The scale now ends at the largest |score| of the user's text (not the first token, a
  // special token or the template's; here the template's last "\n" held the maximum).
  const [qa, qb] = want.query_span;
  const ordinary = want.tokens.map((t: any, i: number) =>
    !t.special && i > 0 && i >= qa && i < qb ? Math.abs(want.methods.attnlrp.scores[i]) : 0);
  const maxAfter = Number(await legendMax());
  expect(Math.abs(maxAfter - Math.max(...ordinary))).toBeLessThanOrEqual(1e-4 * maxAfter);
  expect(maxAfter).toBeLessThan(maxBefore);
  // Scores are unchanged (hover and exports keep them); ordinary tokens got more color.
  expectClose(await scoresOnPage(page), scores);
  const after = await colors();
  expect(after.filter((c, i) => c !== before[i]).length).toBeGreaterThan(0);
  expect(await page.evaluate(() => (window as any).__marker)).toBe('same page');

  // Agreement: ρ of saliency and AttnLRP over the tokens in view, as the CLI's scores give.
  const cell = page.locator('[data-testid=agreement] td[data-methods="saliency:attnlrp"]');
  const rho = Number(await cell.getAttribute('data-rho'));
  const ref = spearman(want.methods.saliency.scores, want.methods.attnlrp.scores);
  expect(Math.abs(rho - ref)).toBeLessThanOrEqual(1e-3);
  await expect(page.locator('[data-testid=agreement] td[data-methods="attnlrp:attnlrp"]')).toHaveText('1.00');
  await expect(page.locator('[data-testid=conservation]')).toContainText('The token scores add up');
  await page.screenshot({ path: path.join(shots, 'sinks-agreement.png'), fullPage: true });
});

test('a result under a changed prompt or target is marked out of date until recomputed', async ({ page }) => {
  await explain(page, 'What is the capital of France?');
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const stale = page.locator('[data-testid=stale]');
  await expect(stale).toHaveCount(0);
  await page.locator('textarea[name=prompt]').fill('What is the capital of Italy?');
  await expect(stale).toContainText('Out of date');
  await expect(page.locator('.results')).toHaveClass(/stale/);
  await page.screenshot({ path: path.join(shots, 'stale.png'), fullPage: true });
  // Back to what was computed: current again, nothing recomputed.
  await page.locator('textarea[name=prompt]').fill('What is the capital of France?');
  await expect(stale).toHaveCount(0);
  // A new target text also dates the result; Explain clears the mark.
  await page.locator('input[name=target]').fill(' Paris');
  await expect(stale).toHaveCount(1);
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(stale).toHaveCount(0);
  await expect(page.locator('.results')).not.toHaveClass(/stale/);
});

/** WCAG 2 contrast ratio of two computed CSS colors (`rgb(r, g, b)`). */
function contrastRatio(a: string, b: string): number {
  const lum = (c: string) => {
    const [r, g, bl] = c.match(/\d+(\.\d+)?/g)!.slice(0, 3).map(Number).map((v) => {
      const s = v / 255;
      return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}

test('token text contrasts at least 4.5:1 with its color under every method', async ({ page }) => {
  await explain(page, 'What is the capital of France?');
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  for (const m of ['saliency', 'input_x_gradient', 'attnlrp', 'cp_lrp']) {
    await page.locator(`input[name=method][value=${m}]`).check();
    const pairs = await page.locator('.tokens .tok').evaluateAll((els) =>
      els.map((e) => [getComputedStyle(e).color, getComputedStyle(e).backgroundColor]));
    expect(pairs.length).toBeGreaterThan(10);
    const worst = Math.min(...pairs.map(([fg, bg]) => contrastRatio(fg, bg)));
    expect(worst, `${m}: the least readable token`).toBeGreaterThanOrEqual(4.5);
  }
});

test('readable by default: most of the user\'s tokens get a visible color under every method', async ({ page }) => {
  for (const width of [1400, 800, 400]) {
    await page.setViewportSize({ width, height: 900 });
    await page.goto('/?chat=1');
    await expect(page.locator('button[name=submit]')).toBeEnabled();
    await expect(page.locator('select[name=model]')).toHaveValue('smollm2-135m');
    // The default prompt, as a first-time user presses Explain.
    await page.locator('button[name=submit]').click();
    await expect(page.locator('[data-testid=status]')).toHaveText('done');
    await expect(page.locator('input[name=query_only]')).toBeChecked();
    await expect(page.locator('input[name=sinks_out]')).toBeChecked();
    for (const m of ['saliency', 'input_x_gradient', 'attnlrp', 'cp_lrp']) {
      await page.locator(`input[name=method][value=${m}]`).check();
      const colors = await page.locator('.tokens .tok').evaluateAll((els) =>
        els.map((e) => getComputedStyle(e).backgroundColor.match(/\d+/g)!.slice(0, 3).map(Number)));
      // The user's text only: "What is the capital of France?" is 7 tokens.
      expect(colors.length).toBe(7);
      const visible = colors.filter((c) => Math.min(...c) < 235).length;
      expect(visible / colors.length, `${m}: tokens with a visible color`).toBeGreaterThan(0.5);
      if (m === 'attnlrp') {
        await page.screenshot({ path: path.join(shots, `first-view-${width}.png`), fullPage: true });
      }
    }
  }
});

test('each method says what it measures: on its toggle and in the "?" popover', async ({ page }) => {
  await explain(page, 'What is the capital of France?');
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page.locator('label.method', { hasText: 'AttnLRP' })).toHaveAttribute('title', /signed/);
  // The method in view is described in words under the toggles, for keyboard users too.
  await page.locator('input[name=method][value=attnlrp]').focus();
  await page.keyboard.press('ArrowRight');
  await expect(page.locator('input[name=method][value=cp_lrp]')).toBeChecked();
  await expect(page.locator('[data-testid=method-about]')).toContainText('CP-LRP: relevance with attention and the MLP gate held constant (signed).');
  const help = page.locator('[data-testid=method-help]');
  await expect(help.locator('dl')).toBeHidden();
  await help.locator('summary').focus();
  await page.keyboard.press('Enter');
  await expect(help.locator('dl')).toBeVisible();
  // One entry per registered method, integrated gradients included.
  await expect(help.locator('dd')).toHaveCount(5);
  await expect(help).toContainText('the gradient\'s L2 norm (unsigned)');
  await expect(help).toContainText('sums to the target\'s change along it');
});

test('before running: the token count and a time estimate; a long prompt gets a warning', async ({ page }) => {
  const prompt = 'What is the capital of France?';
  await page.goto('/?chat=1');
  await expect(page.locator('button[name=submit]')).toBeEnabled();
  await expect(page.locator('select[name=model]')).toHaveValue('smollm2-135m');
  const est = page.locator('[data-testid=estimate]');
  await page.locator('textarea[name=prompt]').fill(prompt);
  const want = engineJson(prompt, 'saliency');
  await expect(est).toHaveAttribute('data-tokens', String(want.tokens.length));
  // Once an explanation has run, the server knows its pace: the estimate gives a time.
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await page.locator('textarea[name=prompt]').fill(`${prompt} Answer briefly.`);
  await expect(est).toHaveAttribute('data-seconds', /^[0-9.e-]+$/);
  await expect(est).toContainText(/tokens · explaining takes about [0-9.]+ s here/);
  // It counts what Explain would run: the logit lens (on by default, and costlier than the
  // map on this model) until it is turned off.
  const asked: any[] = [];
  page.on('request', (r) => {
    if (r.url().includes('/api/estimate')) asked.push(JSON.parse(r.postData() ?? '{}').request);
  });
  await page.locator('textarea[name=prompt]').fill(`${prompt} Answer in a word.`);
  await expect.poll(() => asked.length).toBeGreaterThan(0);
  expect(asked[asked.length - 1].lens).toBe(true);
  await page.locator('input[name=lens]').uncheck();
  await page.locator('textarea[name=prompt]').fill(`${prompt} Answer in two words.`);
  await expect.poll(() => asked.length).toBeGreaterThan(1);
  expect(asked[asked.length - 1].lens ?? false).toBe(false);
  // A long prompt: warned before it runs (slow), or refused as over the limit.
  await page.locator('textarea[name=prompt]').fill('All work and no play makes Jack a dull boy. '.repeat(600));
  await expect(est).toHaveClass(/slow|over/);
  await expect(est).toContainText(/about [0-9]+ s here|over this model's limit/);
  await page.screenshot({ path: path.join(shots, 'estimate-long.png') });
});
