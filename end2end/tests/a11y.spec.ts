import { test, expect, Page } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';

/** Serious and critical accessibility violations on the page as it is now. */
async function violations(page: Page): Promise<string[]> {
  const r = await new AxeBuilder({ page }).analyze();
  return r.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.nodes.length}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
}

test('keyboard: Ctrl+Enter explains; tokens and grid cells take focus, arrows move, the tooltip follows', async ({ page }) => {
  await page.goto('/?chat=1');
  await expect(page.locator('button[name=submit]')).toBeEnabled();
  await expect(page.locator('select[name=model]')).toHaveValue('smollm2-135m');
  const box = page.getByRole('textbox', { name: /Prompt/ });
  await box.fill('The Eiffel Tower is in the city of');
  await box.press('Control+Enter');
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page.getByRole('status').first()).toHaveText('done');

  const tokens = page.locator('.tokens .tok');
  const tip = page.locator('[data-testid=tooltip]');
  // One tab stop for the tokens: the first.
  await expect(page.locator('.tokens .tok[tabindex="0"]')).toHaveCount(1);
  await tokens.first().focus();
  await expect(tip).toContainText(`${await tokens.first().innerText()}`.trim());
  await page.keyboard.press('ArrowRight');
  await expect(tokens.nth(1)).toBeFocused();
  await expect(tip).toContainText(/Saliency: [-0-9.e]+ \(rank \d+ of \d+\)/);
  await page.keyboard.press('End');
  await expect(tokens.last()).toBeFocused();

  const cell = page.locator('rect.cell[tabindex="0"]');
  await cell.focus();
  await expect(tip).toContainText('layer 0');
  await page.keyboard.press('ArrowDown');
  await expect(page.locator('rect.cell:focus')).toHaveAttribute('data-layer', '1');
  await expect(tip).toContainText('layer 1');
  await page.keyboard.press('ArrowRight');
  await expect(tip).toContainText('layer 1');
});

test('axe: no serious or critical accessibility violations on the main views', async ({ page }) => {
  await page.goto('/');
  await expect(page.locator('button[name=submit]')).toBeEnabled();
  expect(await violations(page), 'the empty page').toEqual([]);
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  expect(await violations(page), 'an explanation').toEqual([]);
  await page.locator('input[name=method][value=attnlrp]').check();
  await page.locator('input[name=signs]').check();
  expect(await violations(page), 'AttnLRP with sign marks').toEqual([]);
  await page.goto(`/?prompt=${encodeURIComponent('Name a color.')}&generate=1&greedy=1&max_new=4&explain=1&step=1&all_steps=saliency`);
  await expect(page.locator('[data-testid=matrix] rect.mcell').first()).toBeVisible({ timeout: 120_000 });
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  expect(await violations(page), 'an answer, a step and the matrix').toEqual([]);
  await page.goto(`/?prompt=${encodeURIComponent('The capital of France is')}&chat=0&explain=1&method=attnlrp&inside=1&ablation=1&unit=23%3Ah4&steer=${encodeURIComponent('0:5*2')}`);
  await expect(page.locator('[data-testid=unit-card]')).toContainText('Head 23:h4', { timeout: 120_000 });
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  expect(await violations(page), 'neurons, heads, a card, the ablation check, steered').toEqual([]);
  // A given answer whose characters take several tokens, a span of it explained.
  await page.goto(`/?prompt=${encodeURIComponent('The capital of Japan is')}&chat=0&generate=1&answer=${encodeURIComponent(' 東京, Tokyo.')}&explain=1&span=1:4`);
  await expect(page.locator('.answer .ans-tok.piece').first()).toBeVisible({ timeout: 120_000 });
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  expect(await violations(page), 'a given answer in pieces, a span of it').toEqual([]);
});
