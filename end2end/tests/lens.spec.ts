import { test, expect, Page } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..', '..');
const cli = path.join(root, 'target', 'release', 'tokenlens');
const shots = path.join(__dirname, '..', 'test-results', 'screenshots');
const prompt = 'The Eiffel Tower is in the city of';

/** The CLI's lens for the prompt (chat template on, as the page's default). */
function engineLens(): any {
  const out = execFileSync(
    cli,
    ['explain', '--prompt', prompt, '--methods', 'saliency', '--lens', '--json'],
    { encoding: 'utf8' },
  );
  return JSON.parse(out);
}

/** The first layer from which the target is the lens' top-1 at every later layer. */
function settles(lens: any[][], t: number): number | null {
  let lastMiss = -1;
  lens.forEach((row, l) => { if (row[t].target_rank !== 0) lastMiss = l; });
  return lastMiss + 1 < lens.length ? lastMiss + 1 : null;
}

async function fills(page: Page): Promise<string[]> {
  return page.locator('[data-testid=grid] rect.cell').evaluateAll((els) => els.map((e) => e.getAttribute('fill')!));
}

test('logit lens: hover shows the CLI\'s top-5, the lens colors switch without recomputing, the settles row names the CLI\'s layer', async ({ page }) => {
  await page.goto('/?query_only=0');
  await expect(page.locator('button[name=submit]')).toBeEnabled();
  await expect(page.locator('select[name=model]')).toHaveValue('smollm2-135m');
  await page.locator('textarea[name=prompt]').fill(prompt);
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  // The lens comes with an explanation by default.
  await expect(page).toHaveURL(/lens=1/);
  await expect(page.locator('input[name=lens]')).toBeChecked();
  const want = engineLens();
  const lens = want.lens;
  const n = want.tokens.length;
  expect(lens.length).toBe(want.n_layers);

  // Every cell carries the target's lens probability, equal to the CLI's.
  const probs = await page.locator('[data-testid=grid] rect.cell').evaluateAll((els) =>
    els.map((e) => [Number(e.getAttribute('data-layer')), Number(e.getAttribute('data-token-index')), Number(e.getAttribute('data-lens-prob'))]));
  expect(probs.length).toBe(want.n_layers * n);
  for (const [l, t, p] of probs) {
    expect(Math.abs(p - lens[l][t].target_prob)).toBeLessThanOrEqual(1e-4);
  }

  // Hovering a cell shows that layer's top 5 there, in the CLI's order, with its probabilities.
  const target = want.target.text;
  for (const [l, t] of [[20, n - 1], [want.n_layers - 1, n - 1], [5, n - 3]]) {
    await page.locator(`rect.cell[data-layer="${l}"][data-token-index="${t}"]`).hover();
    const tip = page.locator('[data-testid=tooltip]');
    await expect(tip).toContainText(`layer ${l}`);
    const text = await tip.innerText();
    const line = text.split('\n').find((s) => s.startsWith('lens top-5: '))!;
    expect(line).toBeTruthy();
    const shown = line.slice('lens top-5: '.length).split(' · ');
    const c = lens[l][t];
    expect(shown.length).toBe(5);
    shown.forEach((s, i) => {
      const sp = s.lastIndexOf(' ');
      expect(JSON.parse(s.slice(0, sp))).toBe(c.texts[i]);
      const p = Number(s.slice(sp + 1));
      expect(Math.abs(p - c.probs[i])).toBeLessThanOrEqual(5e-3 * c.probs[i] + 1e-6);
    });
    expect(text).toContain(`lens: target ${JSON.stringify(target)} rank ${c.target_rank + 1}`);
  }

  // The row under the grid: where the answer forms at the last position.
  const layer = settles(lens, n - 1);
  const row = page.locator('[data-testid=lens-settles]');
  await expect(row).toHaveAttribute('data-layer', layer === null ? '' : String(layer));
  if (layer !== null) await expect(row).toContainText(`from layer ${layer} on`);

  // Coloring by the lens is a view: no request, the URL says so, the cells change color.
  let requests = 0;
  page.on('request', (r) => { if (r.url().includes('/api/explain')) requests++; });
  const before = await fills(page);
  await page.locator('input[name=lens_colors]').check();
  await expect(page).toHaveURL(/grid=lens/);
  await expect(page.locator('.grid-section h2')).toContainText('logit lens');
  await expect(page.locator('[data-testid=lens-legend]')).toBeVisible();
  const after = await fills(page);
  expect(after).not.toEqual(before);
  // The last layer's cell at the last position is as bright as the target's probability there.
  await page.screenshot({ path: path.join(shots, 'lens.png'), fullPage: true });
  await page.locator('input[name=lens_colors]').uncheck();
  expect(await fills(page)).toEqual(before);
  expect(requests).toBe(0);

  // The JSON export carries the lens, the SVG figure draws its grid when it is in view.
  await page.locator('input[name=lens_colors]').check();
  const [json] = await Promise.all([page.waitForEvent('download'), page.locator('button[name=export_json]').click()]);
  const doc = JSON.parse(fs.readFileSync((await json.path())!, 'utf8'));
  expect(doc.lens.length).toBe(want.n_layers);
  expect(doc.lens[3][n - 1].top).toEqual(lens[3][n - 1].top);
  const [svg] = await Promise.all([page.waitForEvent('download'), page.locator('button[name=export_svg]').click()]);
  expect(fs.readFileSync((await svg.path())!, 'utf8')).toContain('grid: logit lens p(target)');
  await page.locator('input[name=lens_colors]').uncheck();

  // A reload reproduces the view with the lens; turning it off recomputes without one.
  await page.locator('input[name=lens_colors]').check();
  await page.reload();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page.locator('.grid-section h2')).toContainText('logit lens');
  await page.locator('input[name=lens]').uncheck();
  await expect(page).not.toHaveURL(/lens=1/);
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page.locator('[data-testid=lens-settles]')).toHaveCount(0);
  await expect(page.locator('rect.cell[data-lens-prob]')).toHaveCount(0);
  await expect(page.locator('input[name=lens_colors]')).toBeDisabled();
});
