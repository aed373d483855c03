import { test, expect } from '@playwright/test';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { near, segs, shares, shots, tokenlens } from './helpers';

const prompt = 'The Eiffel Tower is in the city of';

const sum = (xs: number[]) => xs.reduce((t, v) => t + v, 0);

test('compare: two methods, then two models aligned by characters, then an edit; one permalink reopens it', async ({ page }) => {
  await page.goto('/?chat=1');
  await expect(page.locator('button[name=submit]')).toBeEnabled();
  await page.locator('textarea[name=prompt]').fill(prompt);
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await page.locator('[data-testid=compare-link]').click();
  await expect(page).toHaveURL(/\/compare\?/);
  await expect(page.locator('[data-testid=status]')).toHaveText('done');

  // Two methods of one explanation: the same tokens, so one segment per query token.
  const smol = tokenlens('explain', '--prompt', prompt, '--methods', 'saliency,attnlrp');
  const rows = page.locator('[data-testid=compare-rows]');
  await expect(rows.locator('.cmp-row')).toHaveCount(3);
  near(await segs(page, 'data-a'), shares(smol, 'saliency'));
  near(await segs(page, 'data-b'), shares(smol, 'attnlrp'));
  const diffs = await segs(page, 'data-diff');
  const a = await segs(page, 'data-a'), b = await segs(page, 'data-b');
  diffs.forEach((d, i) => expect(Math.abs(d - (b[i] - a[i]))).toBeLessThanOrEqual(1e-6));
  // B's method is a view: switching it recomputes nothing.
  await page.locator('select[name=b_method]').selectOption('input_x_gradient');
  near(await segs(page, 'data-b'), shares(tokenlens('explain', '--prompt', prompt, '--methods', 'input_x_gradient'), 'input_x_gradient'));
  await page.locator('select[name=b_method]').selectOption('attnlrp');

  // Two models on the same text: Gemma 3 tokenizes it its own way; rows stay aligned.
  await page.locator('select[name=b_model]').selectOption('gemma3-270m');
  await page.locator('button[name=compare]').click();
  await expect(page).toHaveURL(/b_model=gemma3/);
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  // Gemma 3 270M has no chat template: it reads the text as is.
  const gemma = tokenlens('explain', '--model', 'gemma3-270m', '--raw', '--prompt', prompt, '--methods', 'attnlrp');
  const texts = async (row: string) => (await page.locator(`[data-row=${row}] .seg`).allInnerTexts()).join('');
  expect(await texts('a')).toBe(prompt);
  expect(await texts('b')).toBe(prompt);
  // Each row keeps its own total: A's shares are SmolLM2's, B's sum to Gemma's.
  expect(Math.abs(sum(await segs(page, 'data-a')) - sum(shares(smol, 'saliency')))).toBeLessThanOrEqual(1e-4);
  expect(Math.abs(sum(await segs(page, 'data-b')) - sum(shares(gemma, 'attnlrp')))).toBeLessThanOrEqual(1e-4);
  const nA = smol.query_span[1] - smol.query_span[0];
  const nB = gemma.tokens.filter((t: any) => t.end > t.start).length;
  expect(await rows.locator('[data-row=a] .seg').count()).toBeGreaterThanOrEqual(Math.max(nA, nB));
  await expect(page.locator('.cmp-label').nth(1)).toContainText('gemma3-270m');
  await page.screenshot({ path: path.join(shots, 'compare-models.png'), fullPage: true });

  // Exports: JSON with both explanations and the segments; an SVG with three tracks.
  const nSegs = await rows.locator('[data-row=a] .seg').count();
  const [json] = await Promise.all([page.waitForEvent('download'), page.locator('button[name=export_json]').click()]);
  const doc = JSON.parse(fs.readFileSync((await json.path())!, 'utf8'));
  expect(doc.a.explanation.model).toBe('smollm2-135m');
  expect(doc.b.explanation.model).toBe('gemma3-270m');
  expect(doc.b.method).toBe('attnlrp');
  expect(doc.b.explanation.methods.attnlrp.scores).toEqual(gemma.methods.attnlrp.scores.map((v: number) => expect.closeTo(v, 4)));
  expect(doc.segments.length).toBe(nSegs);
  const [svg] = await Promise.all([page.waitForEvent('download'), page.locator('button[name=export_svg]').click()]);
  const text = fs.readFileSync((await svg.path())!, 'utf8');
  expect(text.match(/<g data-track/g)!.length).toBe(3 * nSegs);
  expect(text).toContain('gemma3-270m');

  // Shared as one permalink, which reopens the same rows.
  const beforeA = await segs(page, 'data-a'), beforeB = await segs(page, 'data-b');
  await page.locator('button[name=share]').click();
  const link = page.locator('[data-testid=share-link]');
  await expect(link).toHaveAttribute('href', /\/s\/[A-Za-z0-9_-]+$/);
  const href = (await link.getAttribute('href'))!;
  await page.goto(href);
  await expect(page.locator('[data-testid=compare-rows] .cmp-row')).toHaveCount(3);
  near(await segs(page, 'data-a'), beforeA);
  near(await segs(page, 'data-b'), beforeB);
  await expect(page.locator('.cmp-label').nth(1)).toContainText('gemma3-270m');

  // An edit: B is the prompt with one word changed; the changed word is one segment.
  await page.goBack();
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  await page.locator('select[name=b_model]').selectOption('smollm2-135m');
  await page.locator('textarea[name=b_prompt]').fill('The Eiffel Tower is in the town of');
  await page.locator('button[name=compare]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  const edited = page.locator('[data-row=diff] .seg[data-edited]');
  await expect(edited).toHaveCount(1);
  await expect(edited).toHaveText('city→town');
  expect(await texts('b')).toBe('The Eiffel Tower is in the town of');
  await page.screenshot({ path: path.join(shots, 'compare-edit.png'), fullPage: true });
});
