import { test, expect, Page } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..', '..');
const cli = path.join(root, 'target', 'release', 'tokenlens');
const shots = path.join(__dirname, '..', 'test-results', 'screenshots');
const prompt = 'What is the capital of France?';
// The page computes every method; the random band does not depend on them.
const methods = 'saliency,input_x_gradient,attnlrp,cp_lrp';

/** The CLI's faithfulness document for the prompt (chat template on, as the page's default). */
function engineFaithfulness(operator: string): any {
  const out = execFileSync(
    cli,
    ['explain', '--prompt', prompt, '--methods', methods, '--faithfulness', '--operator', operator, '--query-only', '--json'],
    { encoding: 'utf8' },
  );
  return JSON.parse(out);
}

function expectNear(got: number, want: number) {
  expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(want)));
}

async function numbers(page: Page, sel: string, attr: string): Promise<number[]> {
  return page.locator(sel).evaluateAll((els, a) => els.map((e) => Number(e.getAttribute(a))), attr);
}

function expectCurve(got: number[], want: number[]) {
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => expectNear(g, want[i]));
}

/** Every method's scores line and the chart's points equal the CLI's. */
async function expectCurves(page: Page, want: any) {
  const f = want.faithfulness;
  for (const m of methods.split(',')) {
    const line = page.locator(`[data-testid=faith-lines] li[data-method=${m}]`);
    expectNear(Number(await line.getAttribute('data-abpc')), f.methods[m].abpc);
    expectNear(Number(await line.getAttribute('data-comprehensiveness')), f.methods[m].comprehensiveness[1]);
    expectNear(Number(await line.getAttribute('data-sufficiency')), f.methods[m].sufficiency[1]);
    expectNear(Number(await line.getAttribute('data-random-abpc')), f.random.abpc_mean);
  }
  const chart = page.locator('[data-testid=faith-chart]');
  const m = await chart.getAttribute('data-method');
  expectCurve(await numbers(page, '[data-testid=faith-chart] circle.morf', 'data-logit'), f.methods[m!].morf.logit);
  expectCurve(await numbers(page, '[data-testid=faith-chart] circle.lerf', 'data-logit'), f.methods[m!].lerf.logit);
  expectCurve(await numbers(page, '[data-testid=faith-chart] circle.random', 'data-logit'), f.random.logit_mean);
}

test('faithfulness: curves after the map equal the CLI\'s, hover names the removed token, the operator recomputes, exports and permalinks carry them', async ({ page }) => {
  await page.goto('/?chat=1');
  await expect(page.locator('button[name=submit]')).toBeEnabled();
  await expect(page.locator('select[name=model]')).toHaveValue('smollm2-135m');
  await page.locator('textarea[name=prompt]').fill(prompt);
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const panel = page.locator('[data-testid=faithfulness]');
  const on = panel.locator('[data-testid=faith-on]');
  await expect(on).not.toBeChecked();
  await expect(panel.locator('[data-testid=faith-chart]')).toHaveCount(0);

  // Turning the curves on runs the explanation again with them: the map is back first, the
  // curves follow as a stage of their own.
  await on.check();
  await expect(page).toHaveURL(/faithfulness=replace/);
  await expect(page.locator('[data-testid=faith-pending]')).toBeVisible();
  await expect(page.locator('.tokens .tok').first()).toBeVisible();
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  const want = engineFaithfulness('replace');
  await expect(panel.locator('[data-testid=faith-measured]')).toHaveAttribute('data-operator', 'replace');
  await expect(panel.locator('[data-testid=faith-measured]')).toHaveAttribute(
    'data-eligible', String(want.faithfulness.eligible.length));
  await expect(panel.locator('[data-testid=faith-lines] li')).toHaveCount(4);
  await expect(panel.locator('li[data-method=attnlrp]')).toContainText(/AttnLRP: ABPC -?[0-9.]+ \(random -?[0-9.]+ ± [0-9.]+\) · comprehensiveness@20% /);
  await expectCurves(page, want);

  // Hovering MoRF's first step names the token it took out: the method's top-ranked one.
  const chart = panel.locator('[data-testid=faith-chart]');
  const m = (await chart.getAttribute('data-method'))!;
  const first = want.faithfulness.methods[m].morf.order[0];
  await chart.locator('circle.morf[data-step="1"]').hover();
  const tip = page.locator('[data-testid=tooltip]');
  await expect(tip).toContainText(`taken out here: ${JSON.stringify(want.tokens[first].text)} (position ${first})`);
  await expect(tip).toContainText('step 1');
  await page.screenshot({ path: path.join(shots, 'faithfulness.png'), fullPage: true });
  // By keyboard: MoRF's first point is the chart's tab stop; the arrow moves to step 1.
  await chart.locator('circle.morf[tabindex="0"]').focus();
  await expect(tip).toContainText('step 0');
  await page.keyboard.press('ArrowRight');
  await expect(tip).toContainText(`taken out here: ${JSON.stringify(want.tokens[first].text)}`);

  // The JSON export has the curves in the CLI's schema; the HTML export lists the scores.
  const download = async (name: string) => {
    const [d] = await Promise.all([page.waitForEvent('download'), page.locator(`button[name=export_${name}]`).click()]);
    return fs.readFileSync((await d.path())!, 'utf8');
  };
  const json = JSON.parse(await download('json'));
  expect(json.faithfulness.eligible).toEqual(want.faithfulness.eligible);
  expectCurve(json.faithfulness.methods.attnlrp.morf.logit, want.faithfulness.methods.attnlrp.morf.logit);
  const html = await download('html');
  expect(html).toContain('<h2>Faithfulness</h2>');
  expect(html).toMatch(/<li>CP-LRP: ABPC /);

  // A permalink shows the same curves without recomputing.
  await page.locator('button[name=share]').click();
  await expect(page.locator('[data-testid=share-link]')).toHaveValue(/\/s\/[A-Za-z0-9_-]{12}$/);
  const link = await page.locator('[data-testid=share-link]').inputValue();
  await page.goto(link);
  await expect(page.locator('[data-testid=shared-note]')).toBeVisible();
  await expect(page.locator('[data-testid=faith-chart]')).toBeVisible();
  await expectCurves(page, want);

  // Another operator recomputes, and says what it measured.
  await page.goto(`/?prompt=${encodeURIComponent(prompt)}&explain=1&faithfulness=replace`);
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  await page.locator('[data-testid=faith-operator]').selectOption('zero');
  await expect(page).toHaveURL(/faithfulness=zero/);
  await expect(page.locator('[data-testid=faith-measured]')).toHaveAttribute('data-operator', 'zero', { timeout: 120_000 });
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expectCurves(page, engineFaithfulness('zero'));
});
