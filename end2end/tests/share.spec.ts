import { test, expect, Page } from '@playwright/test';
import { execFileSync, spawn, ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..', '..');
const cli = path.join(root, 'target', 'release', 'tokenlens');
const serverBin = path.join(root, 'target', 'release', 'tokenlens-server');
const shots = path.join(__dirname, '..', 'test-results', 'screenshots');
const prompt = 'The Eiffel Tower is in the city of';

/** The generation settings, unfolded (they are folded under Generate until asked for). */
async function unfold(page: Page): Promise<Page> {
  const fold = page.locator('details.gen-fold');
  if (!(await fold.evaluate((d) => (d as HTMLDetailsElement).open))) {
    await fold.locator('summary').click();
  }
  return page;
}

function expectClose(got: number[], want: number[], rel = 1e-4) {
  expect(got.length).toBe(want.length);
  const scale = Math.max(...want.map(Math.abs));
  const worst = Math.max(...got.map((g, i) => Math.abs(g - want[i])));
  expect(worst / scale).toBeLessThanOrEqual(rel);
}

async function scores(page: Page, sel = '.tokens .tok'): Promise<number[]> {
  return page.locator(sel).evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-score'))));
}

/** Live: the buttons are off in the server-rendered page until the wasm has hydrated it. */
async function ready(page: Page) {
  await expect(page.locator('button[name=submit]')).toBeEnabled();
  await expect(page.locator('select[name=model] option').first()).toHaveAttribute('value', /./);
}

/** A server of our own (own port, own data directory), for restarts and demo limits. */
class Server {
  proc?: ChildProcess;
  log = '';
  constructor(public port: number, public args: string[]) {}
  get url() {
    return `http://127.0.0.1:${this.port}`;
  }
  async start() {
    this.log = '';
    this.proc = spawn(serverBin, [...this.args, '--site-root', path.join(root, 'target', 'site'),
      '--addr', `127.0.0.1:${this.port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout!.on('data', (d) => (this.log += d));
    this.proc.stderr!.on('data', (d) => (this.log += d));
    for (let i = 0; i < 600; i++) {
      if (this.log.includes('TokenLens is ready')) return;
      if (this.proc.exitCode !== null) throw new Error(`server exited:\n${this.log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`server did not start:\n${this.log}`);
  }
  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    const exited = new Promise((r) => this.proc!.once('exit', r));
    this.proc.kill('SIGINT');
    await exited;
  }
}

test('the URL holds the view: reopening it reproduces it; back and forward work', async ({ page, context }) => {
  await page.goto('/?chat=1');
  await ready(page);
  await page.locator('textarea[name=prompt]').fill(prompt);
  await page.locator('input[name=contrast]').fill(' Rome');
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  // View settings go into the URL too (amending the entry, not adding one).
  await page.locator('input[name=method][value=attnlrp]').check();
  await page.locator('select[name=granularity]').selectOption('word');
  await page.locator('select[name=clip]').selectOption('p95');
  await expect(page).toHaveURL(/clip=p95/);
  const url = page.url();
  for (const part of ['model=smollm2-135m', 'explain=1', 'contrast=+Rome', 'method=attnlrp', 'units=word']) {
    expect(decodeURIComponent(url)).toContain(part.replace('+', ' '));
  }
  const want = await scores(page);
  const contrast = await page.locator('[data-testid=contrast]').innerText();

  // A fresh tab on that URL recomputes the same view.
  const other = await context.newPage();
  await other.goto(url);
  await expect(other.locator('[data-testid=status]')).toHaveText('done');
  await expect(other.locator('textarea[name=prompt]')).toHaveValue(prompt);
  await expect(other.locator('input[name=method][value=attnlrp]')).toBeChecked();
  await expect(other.locator('select[name=granularity]')).toHaveValue('word');
  await expect(other.locator('select[name=clip]')).toHaveValue('p95');
  await expect(other.locator('[data-testid=contrast]')).toHaveText(contrast);
  expectClose(await scores(other), want, 1e-6);
  await other.close();

  // Generate, explain answer token 2: two history entries; back and forward step through them.
  await (await unfold(page)).locator('input[name=greedy]').check();
  await (await unfold(page)).locator('input[name=max_new_tokens]').fill('6');
  await (await unfold(page)).locator('input[name=max_new_tokens]').dispatchEvent('change');
  await page.locator('button[name=generate]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page).toHaveURL(/generate=1/);
  await expect(page.locator('[data-testid=prediction]')).toHaveCount(0);
  await page.locator('.answer .ans-tok').nth(1).click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page).toHaveURL(/step=1/);
  await expect(page.locator('[data-testid=prediction]')).toContainText('Answer token 2');
  const stepScores = await scores(page);
  await page.goBack();
  await expect(page).not.toHaveURL(/step=/);
  await expect(page.locator('[data-testid=prediction]')).toHaveCount(0);
  await expect(page.locator('.answer .ans-tok')).toHaveCount(6);
  await page.goBack();
  await expect(page).not.toHaveURL(/generate=/);
  await expect(page.locator('.answer .ans-tok')).toHaveCount(0);
  await expect(page.locator('[data-testid=contrast]')).toHaveText(contrast);
  await page.goForward();
  await page.goForward();
  await expect(page).toHaveURL(/step=1/);
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await expect(page.locator('[data-testid=prediction]')).toContainText('Answer token 2');
  expectClose(await scores(page), stepScores, 1e-6);
});

test('exports: SVG parses, PNG decodes at 2x the figure, HTML shows the same scores offline, JSON is the CLI\'s', async ({ page, context }) => {
  await page.goto('/?chat=1');
  await ready(page);
  await page.locator('textarea[name=prompt]').fill(prompt);
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  await page.locator('input[name=method][value=attnlrp]').check();
  const onPage = await scores(page);
  const download = async (name: string) => {
    const [d] = await Promise.all([page.waitForEvent('download'), page.locator(`button[name=export_${name}]`).click()]);
    const file = await d.path();
    expect(file).toBeTruthy();
    return { file: file!, name: d.suggestedFilename() };
  };

  // SVG: well-formed XML with one box per token carrying the page's scores, legend and grid.
  const svg = await download('svg');
  expect(svg.name).toBe('tokenlens-attnlrp.svg');
  const svgText = fs.readFileSync(svg.file, 'utf8');
  const parsed = await page.evaluate((text) => {
    const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
    const root = doc.documentElement;
    return {
      error: doc.getElementsByTagName('parsererror').length,
      width: Number(root.getAttribute('width')),
      height: Number(root.getAttribute('height')),
      tokens: Array.from(doc.querySelectorAll('g.tok')).map((e) => Number(e.getAttribute('data-score'))),
      cells: doc.querySelectorAll('rect.cell').length,
      legend: doc.querySelectorAll('g.legend').length,
    };
  }, svgText);
  expect(parsed.error).toBe(0);
  expectClose(parsed.tokens, onPage, 1e-6);
  expect(parsed.cells).toBe(30 * onPage.length);
  expect(parsed.legend).toBe(1);

  // PNG: a real PNG, twice the SVG's declared size.
  const png = await download('png');
  const bytes = fs.readFileSync(png.file);
  expect(bytes.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  expect(bytes.subarray(12, 16).toString('ascii')).toBe('IHDR');
  expect([bytes.readUInt32BE(16), bytes.readUInt32BE(20)]).toEqual([2 * parsed.width, 2 * parsed.height]);
  expect(bytes.length).toBeGreaterThan(10_000);
  // Shows the decoded PNG for the record.
  const pngPage = await context.newPage();
  await pngPage.setContent(`<img id="fig" src="data:image/png;base64,${bytes.toString('base64')}">`);
  expect(await pngPage.locator('#fig').evaluate((img: HTMLImageElement) => img.naturalWidth)).toBe(2 * parsed.width);
  await pngPage.close();
  fs.mkdirSync(shots, { recursive: true });
  fs.copyFileSync(png.file, path.join(shots, 'export.png'));

  // HTML: standalone (opened from disk, the server unreachable from it), same scores.
  const html = await download('html');
  const htmlPath = path.join(os.tmpdir(), `tokenlens-export-${process.pid}.html`);
  fs.copyFileSync(html.file, htmlPath);
  const offline = await context.newPage();
  await offline.route('http://**', (r) => r.abort());
  await offline.goto('file://' + htmlPath);
  expectClose(await scores(offline), onPage, 1e-6);
  await expect(offline.locator('.tokens .tok').first()).toHaveAttribute('title', /score/);
  expect(await offline.locator('rect.cell').count()).toBe(30 * onPage.length);
  await offline.screenshot({ path: path.join(shots, 'export-html.png'), fullPage: true });
  await offline.close();

  // JSON: the CLI's schema and numbers.
  const json = JSON.parse(fs.readFileSync((await download('json')).file, 'utf8'));
  const cliJson = JSON.parse(execFileSync(cli, ['explain', '--prompt', prompt, '--methods', 'saliency,input_x_gradient,attnlrp,cp_lrp', '--candidates', '--lens', '--json'], { encoding: 'utf8', maxBuffer: 64 << 20 }));
  expect(Object.keys(json).sort()).toEqual(Object.keys(cliJson).sort());
  // The logit lens, computed with the page's explanation by default.
  expect(json.lens.map((row: any[]) => row.map((c) => c.top))).toEqual(cliJson.lens.map((row: any[]) => row.map((c) => c.top)));
  expect(json.tokens).toEqual(cliJson.tokens);
  // The same f32 values (the CLI writes them through f64, the page as the shortest f32 text).
  const f32 = (t: any) => ({ ...t, logit: Math.fround(t.logit), prob: Math.fround(t.prob) });
  expect(f32(json.target)).toEqual(f32(cliJson.target));
  for (const m of ['saliency', 'input_x_gradient', 'attnlrp', 'cp_lrp']) {
    expectClose(json.methods[m].scores, cliJson.methods[m].scores, 1e-5);
  }
  // The other candidates the page explained with the target are the CLI's --candidates.
  expect(json.candidates.length).toBe(9);
  expect(json.candidates.map((c: any) => c.target.id)).toEqual(cliJson.candidates.map((c: any) => c.target.id));
  for (const [i, c] of json.candidates.entries()) {
    expectClose(c.methods.attnlrp.scores, cliJson.candidates[i].methods.attnlrp.scores, 1e-5);
  }
});

// The permalink round trip, on each database: share on one server, stop it, open the link on
// a new server that has a *different* model loaded (so nothing can be recomputed).
const backends: [string, () => string[]][] = [
  ['SQLite', () => ['--data-dir', fs.mkdtempSync(path.join(os.tmpdir(), 'tokenlens-data-'))]],
  ['PostgreSQL', () => {
    const url = process.env.TOKENLENS_TEST_POSTGRES;
    if (!url) throw new Error('TOKENLENS_TEST_POSTGRES is not set: run the tests through scripts/test.sh');
    return ['--database-url', url];
  }],
];
for (const [backend, storage] of backends) {
  test(`permalinks survive a restart and need no model (${backend}); bad ids get a 404 page`, async ({ page }) => {
    const store = storage();
    const first = new Server(3197, ['--model', 'smollm2-135m', ...store]);
    await first.start();
    let link = '';
    let want: number[] = [];
    let answer = '';
    let texts: string[] = [];
    try {
      // Every token in view (the template's line breaks are checked below).
      await page.goto(first.url + '/?query_only=0');
      await ready(page);
      await page.locator('textarea[name=prompt]').fill(`${prompt} (${backend})`);
      await (await unfold(page)).locator('input[name=greedy]').check();
      await (await unfold(page)).locator('input[name=max_new_tokens]').fill('5');
      await (await unfold(page)).locator('input[name=max_new_tokens]').dispatchEvent('change');
      await page.locator('button[name=generate]').click();
      await expect(page.locator('[data-testid=status]')).toHaveText('done');
      await page.locator('.answer .ans-tok').nth(2).click();
      await expect(page.locator('[data-testid=status]')).toHaveText('done');
      await page.locator('input[name=method][value=cp_lrp]').check();
      await page.locator('select[name=granularity]').selectOption('word');
      want = await scores(page);
      texts = await page.locator('.tokens .tok').allTextContents();
      answer = await page.locator('.answer').innerText();
      await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: first.url });
      await page.locator('button[name=share]').click();
      await expect(page.locator('[data-testid=share-link]')).toHaveValue(/\/s\/[A-Za-z0-9_-]{12}$/);
      link = await page.locator('[data-testid=share-link]').inputValue();
      // The link is on the clipboard too, and the page says so.
      await expect(page.locator('[data-testid=share-copied]')).toHaveText('link copied');
      expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(link);
      await page.locator('.share-bar').screenshot({ path: path.join(shots, `share-bar-${backend}.png`) });
      // Sharing the same view again gives the same link (content-addressed).
      await page.locator('button[name=share]').click();
      await expect(page.locator('[data-testid=share-link]')).toHaveValue(link);
    } finally {
      await first.stop();
    }

    const second = new Server(3197, ['--model', 'gemma3-270m', ...store]);
    await second.start();
    try {
      const path_ = new URL(link).pathname;
      const res = await page.goto(second.url + path_);
      expect(res!.status()).toBe(200);
      await expect(page.locator('[data-testid=shared-note]')).toBeVisible();
      await expect(page.locator('select[name=model] option:checked')).toHaveText('smollm2-135m (not on this server)');
      await expect(page.locator('input[name=method][value=cp_lrp]')).toBeChecked();
      await expect(page.locator('select[name=granularity]')).toHaveValue('word');
      await expect(page.locator('.answer')).toHaveText(answer);
      await expect(page.locator('[data-testid=prediction]')).toContainText('Answer token 3');
      expectClose(await scores(page), want, 0);
      // The server-rendered tokens read exactly as the live ones did: line breaks included,
      // nothing added (server rendering once turned empty text into a space beside each ↵).
      expect(texts.some((t) => t.includes('\n'))).toBe(true);
      expect(await page.locator('.tokens .tok').allTextContents()).toEqual(texts);
      // View toggles still work on a stored view.
      await page.locator('select[name=granularity]').selectOption('token');
      await expect(page.locator('.tokens .tok')).not.toHaveCount(want.length);
      await page.screenshot({ path: path.join(shots, `permalink-${backend}.png`), fullPage: true });

      // "Recompute it live" opens the URL view, which needs the model: a clear error here.
      await page.getByRole('link', { name: 'Recompute it live' }).click();
      await expect(page).toHaveURL(/\/\?.*explain=1.*step=2/);
      await expect(page.locator('[data-testid=error]')).toContainText('unknown model "smollm2-135m"');

      for (const [id, msg] of [['AAAAAAAAAAAA', 'No view is stored'], ['not-an-id!', 'malformed'], ['x'.repeat(200), 'malformed']]) {
        const r = await page.goto(`${second.url}/s/${id}`);
        expect(r!.status()).toBe(404);
        await expect(page.locator('[data-testid=not-found]')).toContainText(msg);
      }
    } finally {
      await second.stop();
    }
  });
}

test('two instances on one PostgreSQL: a link shared on either opens on the other, and each verifies the other\'s seals', async ({ page }) => {
  const url = process.env.TOKENLENS_TEST_POSTGRES;
  if (!url) throw new Error('TOKENLENS_TEST_POSTGRES is not set: run the tests through scripts/test.sh');
  // Nothing shared between them but the database: own ports, own data directories.
  const replica = (port: number) => new Server(port, ['--model', 'smollm2-135m', '--database-url', url,
    '--data-dir', fs.mkdtempSync(path.join(os.tmpdir(), 'tokenlens-replica-'))]);
  const [a, b] = [replica(3188), replica(3189)];
  await Promise.all([a.start(), b.start()]);
  try {
    const shareOn = async (server: Server, text: string) => {
      await page.goto(server.url + '/');
      await ready(page);
      await page.locator('textarea[name=prompt]').fill(text);
      await page.locator('button[name=submit]').click();
      await expect(page.locator('[data-testid=status]')).toHaveText('done');
      const want = await scores(page);
      await page.locator('button[name=share]').click();
      await expect(page.locator('[data-testid=share-link]')).toHaveValue(new RegExp(`^${server.url}/s/[A-Za-z0-9_-]{12}$`));
      return { link: await page.locator('[data-testid=share-link]').inputValue(), want };
    };
    const opensOn = async (server: Server, link: string, want: number[]) => {
      const res = await page.goto(server.url + new URL(link).pathname);
      expect(res!.status()).toBe(200);
      await expect(page.locator('[data-testid=shared-note]')).toBeVisible();
      expectClose(await scores(page), want, 0);
    };
    const fromA = await shareOn(a, `${prompt} (replica A)`);
    await opensOn(b, fromA.link, fromA.want);
    // B verifies A's seals: sharing the opened view again from B is accepted, same id.
    await page.locator('button[name=share]').click();
    await expect(page.locator('[data-testid=share-link]')).toHaveValue(b.url + new URL(fromA.link).pathname);
    const fromB = await shareOn(b, `${prompt} (replica B)`);
    await opensOn(a, fromB.link, fromB.want);
    await page.screenshot({ path: path.join(shots, 'replicas.png'), fullPage: true });
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test('hosted-demo mode: answer-length limit, per-client rate limit, storage quota, with clear messages', async ({ page }) => {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenlens-demo-'));
  const demo = new Server(3196, ['--model', 'smollm2-135m', '--demo', '--rate-limit', '4',
    '--max-new-tokens', '8', '--share-quota-mb', '0.0001', '--data-dir', data]);
  await demo.start();
  try {
    await page.goto(demo.url + '/');
    await ready(page);
    await page.locator('textarea[name=prompt]').fill(prompt);
    // Over the answer limit (48 asked for, 8 allowed).
    await page.locator('button[name=generate]').click();
    await expect(page.locator('[data-testid=error]')).toContainText('this server generates at most 8');
    // Within it (request 1 of 4 counted).
    await (await unfold(page)).locator('input[name=max_new_tokens]').fill('3');
    await (await unfold(page)).locator('input[name=max_new_tokens]').dispatchEvent('change');
    await page.locator('button[name=generate]').click();
    await expect(page.locator('[data-testid=status]')).toHaveText('done');
    // The quota (100 bytes) is smaller than any view (request 2).
    await page.locator('button[name=share]').click();
    await expect(page.locator('[data-testid=share-error]')).toContainText('permalink storage on this server is full');
    // Requests 3 and 4 pass, the fifth within the minute is refused with a wait time.
    await page.locator('button[name=submit]').click();
    await expect(page.locator('[data-testid=status]')).toHaveText('done');
    await page.locator('input[name=target]').fill(' Paris');
    await page.locator('button[name=submit]').click();
    await expect(page.locator('[data-testid=status]')).toHaveText('done');
    await page.locator('input[name=target]').fill(' Rome');
    await page.locator('button[name=submit]').click();
    await expect(page.locator('[data-testid=error]')).toContainText(/too many requests: this server takes 4 requests a minute from one client; try again in \d+ s/);
    // Prompt length (2000 characters in demo mode).
    const r = await page.request.post(demo.url + '/api/generate', {
      data: { model: 'smollm2-135m', request: { prompt: 'x'.repeat(2001), max_new_tokens: 2 } },
    });
    expect(await r.text()).toContain('this server takes at most 2000');
  } finally {
    await demo.stop();
  }
});

test('a permalink stores only what a server computed: forged or mismatched results are refused', async ({ page }) => {
  await page.goto('/?chat=1');
  await ready(page);
  await page.locator('textarea[name=prompt]').fill(prompt);
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done');
  const [req] = await Promise.all([
    page.waitForRequest((r) => r.url().endsWith('/api/share')),
    page.locator('button[name=share]').click(),
  ]);
  await expect(page.locator('[data-testid=share-link]')).toHaveValue(/\/s\/[A-Za-z0-9_-]{12}$/);
  const id = (await page.locator('[data-testid=share-link]').inputValue()).split('/s/')[1];
  const body = req.postDataJSON();
  const rec = body.snapshot.explanation;
  expect(rec.model).toBe('smollm2-135m');
  expect(rec.seal).toMatch(/^[A-Za-z0-9_-]{43}$/);
  const post = (b: any) => page.request.post('/api/share', { data: b });

  // The page's own request again: accepted, the same id.
  const same = await post(body);
  expect(same.status()).toBe(200);
  expect(await same.json()).toBe(id);

  // One score changed: the seal no longer matches.
  const forged = structuredClone(body);
  const i = forged.snapshot.explanation.events.findIndex((l: string) => l.startsWith('{"type":"method"'));
  const ev = JSON.parse(forged.snapshot.explanation.events[i]);
  ev.result.scores[3] += 1;
  forged.snapshot.explanation.events[i] = JSON.stringify(ev);
  const r1 = await post(forged);
  expect(r1.status()).toBe(400);
  expect(await r1.text()).toContain("do not carry this server's seal");

  // Genuine results under another view (prompt, target): refused as not that view's.
  for (const change of [(v: any) => (v.prompt = 'Something else entirely'), (v: any) => (v.explain.target = { kind: 'text', value: ' Rome' })]) {
    const b = structuredClone(body);
    change(b.snapshot.view);
    const r = await post(b);
    expect(r.status()).toBe(400);
    expect(await r.text()).toContain('the stored explanation is not the one this view asks for');
  }

  // A request body beyond the old 2 MB default reaches the check whole (no "length limit").
  const big = structuredClone(forged);
  big.snapshot.explanation.events.push(JSON.stringify({ type: 'finished', stop: 'end_of_turn', pad: 'x'.repeat(3 << 20) }));
  const r2 = await post(big);
  expect(r2.status()).toBe(400);
  expect(await r2.text()).toContain("do not carry this server's seal");

  // A body that is not a snapshot, and a request for a model this server lacks: client
  // errors, said as such.
  const r4 = await post({ snapshot: { view: 1 } });
  expect(r4.status()).toBe(400);
  expect(await r4.text()).toContain('Deserialization');
  const r5 = await page.request.post('/api/explain', { data: { model: 'nope', request: { prompt: 'x' } } });
  expect(r5.status()).toBe(404);
  expect(await r5.text()).toContain('unknown model "nope"');

  // Another server (its own database, so its own key) refuses this server's records, and
  // its page says at once when a view is over its size limit.
  const other = new Server(3195, ['--model', 'smollm2-135m', '--share-max-mb', '0.05',
    '--data-dir', fs.mkdtempSync(path.join(os.tmpdir(), 'tokenlens-other-'))]);
  await other.start();
  try {
    const r3 = await page.request.post(other.url + '/api/share', { data: body });
    expect(r3.status()).toBe(400);
    expect(await r3.text()).toContain("do not carry this server's seal");
    await page.goto(other.url + '/');
    await ready(page);
    await page.locator('textarea[name=prompt]').fill(prompt);
    await page.locator('button[name=submit]').click();
    await expect(page.locator('[data-testid=status]')).toHaveText('done');
    await page.locator('button[name=share]').click();
    await expect(page.locator('[data-testid=share-error]')).toContainText(/this view is too large to share \(\d+ KB; this server stores views up to 51 KB\)/);
  } finally {
    await other.stop();
  }
});

test('without its database the server still serves its models; sharing says why, and works once the database is back', async ({ page }) => {
  // A data directory that cannot be made: a file stands where its parent should be.
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenlens-nodb-'));
  const blocker = path.join(base, 'blocker');
  fs.writeFileSync(blocker, '');
  const server = new Server(3193, ['--model', 'smollm2-135m', '--data-dir', path.join(blocker, 'data')]);
  await server.start();
  try {
    const models = await page.request.post(server.url + '/api/models');
    expect(models.status()).toBe(200);
    expect(await models.text()).toContain('smollm2-135m');
    await page.goto(server.url + '/');
    await ready(page);
    await page.locator('textarea[name=prompt]').fill(prompt);
    await page.locator('button[name=submit]').click();
    await expect(page.locator('[data-testid=status]')).toHaveText('done');
    await page.locator('button[name=share]').click();
    await expect(page.locator('[data-testid=share-error]')).toContainText('permalink database cannot be reached');
    const opened = await page.request.get(server.url + '/s/KcDZ9592xAFR');
    expect(opened.status()).toBe(503);
    // The database becomes reachable: the server connects by itself (retries back off to a
    // minute; the first few come within seconds), and a fresh result shares.
    fs.rmSync(blocker);
    await expect.poll(() => server.log.includes('permalink storage ready'), { timeout: 120_000 }).toBe(true);
    await page.locator('button[name=submit]').click();
    await expect(page.locator('[data-testid=status]')).toHaveText('done');
    await page.locator('button[name=share]').click();
    await expect(page.locator('[data-testid=share-link]')).toHaveValue(/\/s\/[A-Za-z0-9_-]{12}$/);
  } finally {
    await server.stop();
  }
});

test('a view too long for a link is stored as a permalink whose short link takes the address bar', async ({ page }) => {
  const long = 'The quick brown fox jumps over the lazy dog. '.repeat(100);
  await page.goto('/?chat=1');
  await ready(page);
  await page.locator('textarea[name=prompt]').fill(long);
  await page.locator('button[name=submit]').click();
  await expect(page.locator('[data-testid=status]')).toHaveText('done', { timeout: 120_000 });
  await expect(page).toHaveURL(/\/s\/[A-Za-z0-9_-]{12}$/);
  expect(page.url().length).toBeLessThan(100);
  const n = await page.locator('.tokens .tok').count();
  const want = await scores(page);
  expect(n).toBeGreaterThan(100);
  await page.reload();
  await expect(page.locator('[data-testid=shared-note]')).toBeVisible();
  expect(await scores(page)).toEqual(want);
});
