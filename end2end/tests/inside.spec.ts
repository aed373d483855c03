// Inside the model: the head grid, the neuron rows, a unit's card and the ablation check show
// the CLI's numbers for the same prompt (issue 35).
import { test, expect } from '@playwright/test';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expectClose, open, shots, tokenlens } from './helpers';

const prompt = 'The capital of France is';

test('neurons and heads, their cards and the ablation check match the CLI', async ({ page }) => {
  test.setTimeout(180_000);
  await open(page, prompt);
  await page.locator('input[name=chat]').uncheck();
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await page.locator('input[name=method][value=attnlrp]').check();
  const toggle = page.locator('input[name=inside]');
  await expect(toggle).not.toBeChecked();
  await toggle.check();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page).toHaveURL(/inside=1/);

  const want = tokenlens('explain', '--raw', '--prompt', prompt, '--methods', 'attnlrp', '--neurons', '8', '--heads');
  const heads = want.methods.attnlrp.heads as { heads: number[] }[];
  // Every head's cell carries the CLI's relevance.
  const cells = await page.locator('[data-testid=head-grid] rect.head').evaluateAll((els) =>
    els.map((e) => [Number(e.getAttribute('data-layer')), Number(e.getAttribute('data-head')), Number(e.getAttribute('data-score'))]));
  expect(cells.length).toBe(heads.length * heads[0].heads.length);
  expectClose(cells.map((c) => c[2]), cells.map(([l, h]) => heads[l].heads[h]), 1e-4);
  // Each layer's top neurons, in the CLI's order with its values.
  const neurons = want.methods.attnlrp.neurons as { top: { index: number; value: number }[] }[];
  const chips = await page.locator('[data-testid=neuron-rows] button.neuron').evaluateAll((els) =>
    els.map((e) => [Number(e.getAttribute('data-layer')), Number(e.getAttribute('data-neuron')), Number(e.getAttribute('data-score'))]));
  const wantChips = neurons.flatMap((l, i) => l.top.map((n) => [i, n.index, n.value]));
  expect(chips.map((c) => `${c[0]}:${c[1]}`)).toEqual(wantChips.map((c) => `${c[0]}:${c[1]}`));
  expectClose(chips.map((c) => c[2]), wantChips.map((c) => c[2]), 1e-4);

  // The exports: the JSON carries both views, the figure draws both with their values.
  const [json] = await Promise.all([page.waitForEvent('download'), page.locator('button[name=export_json]').click()]);
  const doc = JSON.parse(fs.readFileSync((await json.path())!, 'utf8'));
  expect(doc.methods.attnlrp.heads.length).toBe(heads.length);
  expect(doc.methods.attnlrp.neurons.map((l: any) => l.top.map((n: any) => n.index))).toEqual(neurons.map((l) => l.top.map((n) => n.index)));
  const [svgFile] = await Promise.all([page.waitForEvent('download'), page.locator('button[name=export_svg]').click()]);
  const svg = fs.readFileSync((await svgFile.path())!, 'utf8');
  fs.mkdirSync(shots, { recursive: true });
  fs.writeFileSync(path.join(shots, 'inside-figure.svg'), svg);
  const figHeads = [...svg.matchAll(/class="head" [^>]*data-layer="(\d+)" data-head="(\d+)" data-score="([^"]+)"/g)];
  expect(figHeads.length).toBe(cells.length);
  expectClose(figHeads.map((m) => Number(m[3])), figHeads.map((m) => heads[Number(m[1])].heads[Number(m[2])]), 1e-4);
  const figChips = [...svg.matchAll(/class="neuron" data-layer="(\d+)" data-neuron="(\d+)" data-score="([^"]+)"/g)];
  expect(figChips.map((m) => `${m[1]}:${m[2]}`)).toEqual(wantChips.map((c) => `${c[0]}:${c[1]}`));
  expectClose(figChips.map((m) => Number(m[3])), wantChips.map((c) => c[2]), 1e-4);

  // The grid is one tab stop; arrows move between heads and layers, Enter opens a card.
  await page.locator('[data-testid=head-grid] rect.head[data-layer="0"][data-head="0"]').focus();
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowDown');
  await expect(page.locator('[data-testid=tooltip]')).toContainText('layer 1 head 1');
  await page.keyboard.press('Enter');
  await expect(page.locator('[data-testid=unit-card]')).toContainText('Head 1:h1');
  expect(await page.locator('[data-testid=head-grid] rect.head[tabindex="0"]').count()).toBe(1);

  // The most relevant head's card: its attention from the last token is the CLI's.
  let best = [0, 0];
  heads.forEach((l, i) => l.heads.forEach((v, h) => { if (Math.abs(v) > Math.abs(heads[best[0]].heads[best[1]])) best = [i, h]; }));
  await page.locator(`[data-testid=head-grid] rect.head[data-layer="${best[0]}"][data-head="${best[1]}"]`).click();
  await expect(page).toHaveURL(new RegExp(`unit=${best[0]}%3Ah${best[1]}`));
  const card = page.locator('[data-testid=unit-card]');
  await expect(card).toContainText(`Head ${best[0]}:h${best[1]}`);
  const headCard = tokenlens('unit', '--raw', '--prompt', prompt, '--unit', `${best[0]}:h${best[1]}`).card;
  const attention = await card.locator('[data-testid=unit-attention] .tok').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-value'))));
  expectClose(attention, headCard.attention[headCard.attention.length - 1], 1e-5);
  await page.screenshot({ path: path.join(shots, 'inside-head.png'), fullPage: true });

  // A neuron's card: what it writes and where it fires, as the CLI says.
  const top = neurons[neurons.length - 1].top[0];
  const layer = neurons.length - 1;
  await page.locator(`[data-testid=neuron-rows] button.neuron[data-layer="${layer}"][data-neuron="${top.index}"]`).click();
  await expect(card).toContainText(`Neuron ${layer}:${top.index}`);
  const neuronCard = tokenlens('unit', '--raw', '--prompt', prompt, '--unit', `${layer}:${top.index}`).card;
  await expect(card.locator('[data-testid=unit-promotes]')).toContainText(JSON.stringify(neuronCard.promotes[0].text));
  const acts = await card.locator('[data-testid=unit-activations] .tok').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-value'))));
  expectClose(acts, neuronCard.activations, 1e-4);

  // Where a layer-0 neuron fires in general: the corpus pass (progress, then the five texts),
  // as the CLI lists them.
  const first = neurons[0].top[0];
  await page.locator(`[data-testid=neuron-rows] button.neuron[data-layer="0"][data-neuron="${first.index}"]`).click();
  await expect(card).toContainText(`Neuron 0:${first.index}`);
  await card.locator('button[name=contexts]').click();
  const hits = card.locator('[data-testid=unit-contexts] li');
  await expect(hits).toHaveCount(5, { timeout: 120_000 });
  const cliHits = tokenlens('unit', '--raw', '--prompt', prompt, '--unit', `0:${first.index}`, '--contexts').contexts.hits;
  const shown = await hits.evaluateAll((els) => els.map((e) => [Number(e.getAttribute('data-activation')), e.querySelector('mark')!.textContent]));
  expectClose(shown.map((h) => h[0] as number), cliHits.map((h: any) => h.activation), 1e-5);
  expect(shown.map((h) => h[1])).toEqual(cliHits.map((h: any) => Buffer.from(h.text).subarray(h.start, h.end).toString()));
  await page.screenshot({ path: path.join(shots, 'inside-contexts.png'), fullPage: true });
  // The link holds them: a reload lists the same texts.
  await expect(page).toHaveURL(/contexts=1/);
  await page.reload();
  await expect(hits).toHaveCount(5, { timeout: 120_000 });
  expect(await hits.evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-activation'))))).toEqual(shown.map((h) => h[0]));
  // Another unit's card opens without them.
  await page.locator(`[data-testid=neuron-rows] button.neuron[data-layer="${layer}"][data-neuron="${top.index}"]`).click();
  await expect(page).not.toHaveURL(/contexts=1/);
  await expect(hits).toHaveCount(0);

  // The ablation check of the method in view: the CLI's curves.
  await page.locator('input[name=ablation]').check();
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  await expect(page).toHaveURL(/ablation=1/);
  const ab = tokenlens('explain', '--raw', '--prompt', prompt, '--methods', 'attnlrp', '--neurons', '8', '--heads', '--ablation', '8');
  for (const kind of ['heads', 'neurons']) {
    const points = await page.locator(`[data-testid=ablation-${kind}] circle.top`).evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-log-prob'))));
    expectClose(points, ab.methods.attnlrp.ablation[kind].top, 1e-4);
  }
  await expect(page.locator('[data-testid=ablation-heads] figcaption')).toContainText('random of the same layers');
  await page.screenshot({ path: path.join(shots, 'inside-ablation.png'), fullPage: true });
  // Turning neurons and heads off takes the check with it.
  await toggle.uncheck();
  await expect(page).not.toHaveURL(/inside=1/);
  await expect(page).not.toHaveURL(/ablation=1/);
});
