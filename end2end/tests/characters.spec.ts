// Characters, not bytes: tokens that each hold part of a character are shown merged into it,
// their bytes on hover, in the token view, the grid and the answer.
import { test, expect } from '@playwright/test';
import * as path from 'node:path';
import { shots, tokenlens, unfold } from './helpers';

const text = '東京は日本の首都です。';

test('byte-level pieces show as the characters they form, their bytes on hover', async ({ page }) => {
  await page.goto('/?chat=0&query_only=0');
  await expect(page.locator('button[name=submit]')).toBeEnabled();
  await page.locator('textarea[name=prompt]').fill(text);
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const cli = tokenlens('explain', '--prompt', text, '--raw', '--methods', 'saliency');
  // One unit per character: a piece awaiting the rest of its character has an empty text.
  const whole = cli.tokens.filter((t: any) => t.text !== '');
  const toks = page.locator('.tokens .tok');
  await expect(toks).toHaveCount(whole.length);
  expect((await toks.allInnerTexts()).join('')).toBe(text);
  expect(cli.tokens.some((t: any) => t.piece)).toBe(true);
  await toks.first().hover();
  await expect(page.locator('[data-testid=tooltip]')).toContainText(/bytes: ‹E6 9D› ‹B1›/);
  // The grid's labels too.
  await expect(page.locator('.grid text.tok-label').first()).toHaveText('東');
  await page.screenshot({ path: path.join(shots, 'characters.png'), fullPage: true });

  // An answer: a piece is a small mark, the character shown once, its bytes on hover.
  await (await unfold(page)).locator('textarea[name=answer]').fill('京都');
  await page.locator('button[name=generate]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const ans = page.locator('.answer .ans-tok');
  expect((await ans.allInnerTexts()).join('')).toBe('京都');
  await expect(page.locator('.answer .ans-tok.piece').first()).toHaveAttribute('title', /bytes ‹/);
  const last = ans.last();
  await expect(last).toHaveAttribute('title', /its bytes ‹[0-9A-F ]+›/);
  await last.click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page.locator('[data-testid=heading]')).toContainText('"都"');
});
