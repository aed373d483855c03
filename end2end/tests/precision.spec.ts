// Precision as a choice (issue 37): the form's select and the URL's `precision` agree, every
// result says what it was computed in, and a bf16 explanation's scores are the CLI's bf16 ones.
import { expect, test } from '@playwright/test';
import { expectClose, open, scores, tokenlens, generateGreedy } from './helpers';

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const prompt = 'The capital of France is';

test('bf16 from the form: the URL, the badges and the CLI agree', async ({ page }) => {
  await open(page, prompt);
  await page.locator('input[name=chat]').uncheck();
  await page.locator('select[name=precision]').selectOption('bf16');
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page).toHaveURL(/precision=bf16/);
  // The page's result is the CLI's (the same products, the same machine): bf16, or f32 on a
  // CPU without bf16 instructions, which the engine then computes in and says so, and why,
  // in the badge as in the CLI's JSON.
  const cli = tokenlens('explain', '-p', prompt, '--raw', '--precision', 'bf16',
    '--methods', 'saliency,input_x_gradient,attnlrp,cp_lrp');
  const ran = cli.precision ?? 'f32';
  expect(['bf16', 'f32']).toContain(ran);
  // The select said so before anything ran: where bf16 falls back, its option reads "runs in
  // f32 here" and gives the CLI's reason.
  const option = page.locator('select[name=precision] option[value=bf16]');
  if (ran === 'bf16') {
    // bf16 on this CPU's matrix units, or emulated where the server was started with
    // TOKENLENS_BF16=emulate (the same numbers, at f32's speed: the option says so).
    const emulated = process.env.TOKENLENS_BF16 === 'emulate';
    await expect(option).toHaveText(emulated ? 'bf16 (emulated, approximate)' : 'bf16 (fast, approximate)');
    await expect(page.locator('label[data-bf16]')).toHaveAttribute('data-bf16', emulated ? 'emulated' : 'available');
  } else {
    const why = cli.precision_note.slice(cli.precision_note.indexOf(': ') + 2);
    await expect(option).toHaveText('bf16 (runs in f32 here)');
    await expect(option).toHaveAttribute('title', `Explanations run in f32 on this server: ${why}`);
  }
  const badge = page.locator('[data-testid=prediction] .precision-badge');
  await expect(badge).toHaveAttribute('data-precision', ran);
  if (ran === 'bf16') {
    expect(cli.precision_note).toBeUndefined();
    await expect(badge).toHaveText('bf16: approximate');
    await expect(badge).not.toHaveAttribute('data-fallback');
  } else {
    expect(cli.precision_note).toContain('bf16 was asked for');
    await expect(badge).toHaveText('f32: exact (bf16 unavailable)');
    await expect(badge).toHaveAttribute('data-fallback', 'bf16');
    await expect(badge).toHaveAttribute('title', new RegExp(`^${escape(cli.precision_note)}`));
  }
  expectClose(await scores(page), cli.methods.saliency.scores, 1e-4);
  // The answer says it too (generation on the file's quantized weights is bf16's on any CPU).
  const ids = await generateGreedy(page, '4');
  expect(ids.length).toBeGreaterThan(0);
  await expect(page.locator('[data-testid=answer-meta] .precision-badge')).toHaveAttribute('data-precision', 'bf16');
  // A reload keeps the choice, in the form and in what is computed.
  await page.reload();
  await expect(page.locator('select[name=precision]')).toHaveValue('bf16');
  await expect(page.locator('[data-testid=answer-meta] .precision-badge')).toHaveAttribute('data-precision', 'bf16');
});

test('auto on a short prompt explains in f32, as the CLI', async ({ page }) => {
  await open(page, prompt);
  await page.locator('input[name=chat]').uncheck();
  await expect(page.locator('select[name=precision]')).toHaveValue('auto');
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page).not.toHaveURL(/precision=/);
  await expect(page.locator('[data-testid=prediction] .precision-badge')).toHaveAttribute('data-precision', 'f32');
  await expect(page.locator('[data-testid=prediction] .precision-badge')).not.toHaveAttribute('data-fallback');
  const cli = tokenlens('explain', '-p', prompt, '--raw', '--methods', 'saliency');
  expect(cli.precision ?? 'f32').toBe('f32');
  expectClose(await scores(page), cli.methods.saliency.scores, 1e-4);
});
