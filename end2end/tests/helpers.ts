// Helpers shared by the browser tests.
import { expect, Page } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

export const root = path.resolve(__dirname, '..', '..');
export const cli = path.join(root, 'target', 'release', 'tokenlens');
export const shots = path.join(__dirname, '..', 'test-results', 'screenshots');

/** The CLI's JSON output. */
export function tokenlens(...args: string[]): any {
  return JSON.parse(execFileSync(cli, [...args, '--json'], { encoding: 'utf8' }));
}

/** The generation settings, unfolded (they are folded under Generate until asked for). */
export async function unfold(page: Page): Promise<Page> {
  const fold = page.locator('details.gen-fold');
  if (!(await fold.evaluate((d) => (d as HTMLDetailsElement).open))) {
    await fold.locator('summary').click();
  }
  return page;
}

/** max |got − want| / max |want| is at most `rel`. */
export function expectClose(got: number[], want: number[], rel = 1e-4) {
  expect(got.length).toBe(want.length);
  const scale = Math.max(...want.map(Math.abs));
  const worst = Math.max(...got.map((g, i) => Math.abs(g - want[i])));
  expect(worst / scale).toBeLessThanOrEqual(rel);
}

/** The page with `text` typed in, showing every token (not only the user's text). */
export async function open(page: Page, text: string) {
  await page.goto('/?query_only=0');
  // Live: the buttons are off in the server-rendered page until the wasm has hydrated it.
  await expect(page.locator('button[name=generate]')).toBeEnabled();
  await expect(page.locator('select[name=model]')).toHaveValue('smollm2-135m');
  await page.locator('textarea[name=prompt]').fill(text);
}

/** The `data-score` of every element `sel` finds (by default the token view's tokens). */
export async function scores(page: Page, sel = '.tokens .tok'): Promise<number[]> {
  return page.locator(sel).evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-score'))));
}

/** Generates greedily (at most `maxNew` tokens); the answer's token ids as the page shows them. */
export async function generateGreedy(page: Page, maxNew: string): Promise<number[]> {
  await (await unfold(page)).locator('input[name=greedy]').check();
  await (await unfold(page)).locator('input[name=max_new_tokens]').fill(maxNew);
  await (await unfold(page)).locator('input[name=max_new_tokens]').dispatchEvent('change');
  await page.locator('button[name=generate]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  return page.locator('.answer .ans-tok').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-token-id'))));
}

// The compare page's rows.

/** Each query token's score as a share of the query's total |score|, from the CLI's JSON. */
export function shares(doc: any, method: string): number[] {
  // The user's text: the query span with a template, the tokens with text without one.
  const all: number[] = doc.methods[method].scores;
  const s = doc.query_span
    ? all.slice(doc.query_span[0], doc.query_span[1])
    : all.filter((_, i) => doc.tokens[i].end > doc.tokens[i].start);
  const total = s.reduce((t, v) => t + Math.abs(v), 0);
  return s.map((v) => v / total);
}

/** The compare rows' segments' attribute `attr` (data-a, data-b, data-diff). */
export async function segs(page: Page, attr: string): Promise<number[]> {
  return page.locator('[data-row=a] .seg').evaluateAll((els, a) => els.map((e) => Number(e.getAttribute(a))), attr);
}

export function near(got: number[], want: number[]) {
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => expect(Math.abs(g - want[i])).toBeLessThanOrEqual(1e-4));
}
