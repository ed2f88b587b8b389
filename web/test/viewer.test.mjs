// The viewer end to end: `salient serve` on loopback, the page in Debian's chromium driven by
// playwright-core (no browser download). Screenshots of each step go to $SALIENT_SCREENSHOTS
// (build/screenshots). Run by ctest (`viewer`) or: cd web && npm ci && npm test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SALIENT = process.env.SALIENT_BIN || path.join(root, 'build/salient');
const SHOTS = process.env.SALIENT_SCREENSHOTS || path.join(root, 'build/screenshots');
const TESTDATA = process.env.SALIENT_TESTDATA || path.join(root, 'build/testdata');  // ctest's reference fixture
const MODEL = path.join(root, 'models/fashion_cnn.pt');
const SAMPLE = path.join(root, 'models/samples/7-sneaker.png');
const EVIL = '<img src=x onerror=alert(1)>';
mkdirSync(SHOTS, { recursive: true });

// ---- a server of our own ----
function serve(args) {
  return new Promise((resolve, reject) => {
    const proc = spawn(SALIENT, ['serve', '--port', '0', '--workers', '2', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/[0-9.]+:\d+)/.exec(out);
      if (m) resolve({ url: m[1], proc });
    });
    proc.stderr.on('data', (d) => { err += d; });
    proc.on('exit', (code) => reject(new Error('salient serve exited ' + code + ': ' + err)));
  });
}

// An .npy parser of the test's own (not the page's).
function npy(buffer) {
  const b = Buffer.from(buffer);
  const hlen = b.readUInt16LE(8);
  const header = b.subarray(10, 10 + hlen).toString('latin1');
  assert.match(header, /'descr': '<f4'/);
  const shape = /'shape': \(([^)]*)\)/.exec(header)[1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const data = new Float32Array(b.buffer.slice(b.byteOffset + 10 + hlen, b.byteOffset + b.length));
  return { shape, data };
}

let browser, demo, evil, evilDir, tabular, text, dense;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  demo = await serve(['--model', MODEL, '--data', path.join(root, 'models/samples')]);
  // A model whose labels are markup: the page must show them as text.
  evilDir = mkdtempSync(path.join(tmpdir(), 'salient-viewer-'));
  const meta = JSON.parse(readFileSync(path.join(root, 'models/fashion_cnn.json'), 'utf8'));
  meta.labels = meta.labels.map((l, i) => (i === 7 ? EVIL : l));
  writeFileSync(path.join(evilDir, 'evil.json'), JSON.stringify(meta));
  copyFileSync(MODEL, path.join(evilDir, 'evil.pt'));
  copyFileSync(SAMPLE, path.join(evilDir, EVIL + '.png'));
  evil = await serve(['--model', path.join(evilDir, 'evil.pt'), '--metadata', path.join(evilDir, 'evil.json')]);
  tabular = await serve(['--model', path.join(root, 'models/breast_cancer/mlp.pt'), '--data', path.join(root, 'models/breast_cancer/test.csv')]);
  text = await serve(['--model', path.join(root, 'models/langid/langid.pt')]);
  // A segmentation (tools/zoo_models.py, the ctest fixture): a dense output [N, 4, 12, 12].
  // (The Fashion-MNIST demo first: the server's --data is read for its default model.)
  dense = await serve(['--model', MODEL, '--model', path.join(TESTDATA, 'zoo/segmentation.pt'), '--data', path.join(root, 'models/samples')]);
});
after(async () => {
  await browser?.close();
  for (const s of [demo, evil, tabular, text, dense]) if (s) { s.proc.removeAllListeners('exit'); s.proc.kill('SIGTERM'); }
  if (evilDir) rmSync(evilDir, { recursive: true, force: true });
});

// A page with its console errors, dialogs and explain requests recorded.
async function open(server, hash = '') {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const seen = { errors: [], dialogs: [], explains: 0 };
  page.on('console', (m) => { if (m.type() === 'error') seen.errors.push(m.text()); });
  page.on('pageerror', (e) => seen.errors.push(String(e)));
  page.on('dialog', (d) => { seen.dialogs.push(d.message()); d.dismiss(); });
  page.on('request', (r) => { if (r.method() === 'POST' && /\/api\/(explain|jobs|checks)/.test(r.url())) seen.explains++; });
  await page.goto(server.url + '/' + hash);
  await page.waitForSelector('body[data-ready="true"]');
  return { page, seen };
}
const pixels = (page, selector) => page.$eval(selector, (c) => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data));
const differing = (a, b) => { let n = 0; for (let i = 0; i < a.length; i += 4) if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2]) n++; return n; };

async function uploadAndExplain(page, methods) {
  for (const m of methods) await page.check('#m-' + m);
  await page.setInputFiles('#file', SAMPLE);
  for (const m of methods) await page.waitForSelector(`.card[data-key="${m}"] canvas`);
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('done'));
}

test('two methods side by side: maps differ from the input, a hovered value is the .npy value', { timeout: 120000 }, async () => {
  const { page, seen } = await open(demo);
  await uploadAndExplain(page, ['saliency', 'smoothgrad']);
  const input = await pixels(page, '#input-canvas');
  for (const m of ['saliency', 'smoothgrad']) {
    const map = await pixels(page, `.card[data-key="${m}"] canvas`);
    assert.equal(map.length, input.length, m + ': drawn at the input canvas size');
    assert.ok(differing(map, input) > 0.5 * (input.length / 4), m + ': the map changes most pixels');
  }
  // Hover pixel (x 14, y 20) of the saliency map: the page's readout is the .npy's value.
  const canvas = page.locator('.card[data-key="saliency"] canvas');
  const box = await canvas.boundingBox();
  await canvas.hover({ position: { x: (14.5 / 28) * box.width, y: (20.5 / 28) * box.height } });
  const text = await page.textContent('[data-testid="value-saliency"]');
  const shown = Number(/= (\S+)/.exec(text)[1]);
  const href = await page.getAttribute('.card[data-key="saliency"] a[download="saliency.npy"]', 'href');
  const map = npy(await (await fetch(demo.url + href)).arrayBuffer());
  assert.deepEqual(map.shape, [1, 28, 28]);
  const want = map.data[20 * 28 + 14];
  assert.ok(Math.abs(shown - want) <= 1e-5 * Math.max(1e-3, Math.abs(want)), `shown ${shown}, .npy ${want}`);
  assert.match(await page.textContent('[data-testid="value-smoothgrad"]'), /SmoothGrad = /);
  await page.screenshot({ path: path.join(SHOTS, '1-compare.png'), fullPage: true });

  // The second class: the maps change and the page says which class is explained.
  const before = await pixels(page, '.card[data-key="saliency"] canvas');
  const second = page.locator('#predictions li:nth-child(2) button');
  const label = (await second.textContent()).split(' — ')[0];
  await second.click();
  await page.waitForFunction((l) => document.getElementById('explained').textContent.startsWith('Explaining: ' + l), label);
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('done'));
  assert.equal(await second.getAttribute('aria-pressed'), 'true');
  assert.ok(differing(await pixels(page, '.card[data-key="saliency"] canvas'), before) > 100, 'the maps of another class differ');
  await page.screenshot({ path: path.join(SHOTS, '2-second-class.png'), fullPage: true });

  // Overlay controls redraw without a request.
  const requests = seen.explains;
  const drawn = await pixels(page, '.card[data-key="saliency"] canvas');
  await page.fill('#opacity', '0.9');
  await page.$eval('#opacity', (e) => e.dispatchEvent(new Event('input')));
  await page.selectOption('#colormap', 'inferno');
  await page.selectOption('#sign', 'signed');
  await page.fill('#clip', '95');
  await page.$eval('#clip', (e) => e.dispatchEvent(new Event('input')));
  await page.check('#shared');
  await page.waitForTimeout(300);
  assert.ok(differing(await pixels(page, '.card[data-key="saliency"] canvas'), drawn) > 100, 'the controls change the drawing');
  assert.equal(seen.explains, requests, 'no request for an overlay control');
  // The URL holds the view.
  const hash = new URLSearchParams((await page.evaluate(() => location.hash)).slice(1));
  assert.equal(hash.get('methods'), 'saliency,smoothgrad');
  assert.equal(hash.get('colormap'), 'inferno');
  assert.deepEqual(seen.errors, []);
  await page.close();
});

test('a shared URL reopens the view: data item, methods, options, controls', { timeout: 120000 }, async () => {
  const hash = '#' + new URLSearchParams({ id: '7-sneaker.png', methods: 'saliency,integrated-gradients',
    options: JSON.stringify({ 'integrated-gradients.steps': 16 }), colormap: 'jet', sign: 'positive' });
  const { page, seen } = await open(demo, hash);
  await page.waitForSelector('.card[data-key="integrated-gradients"] canvas');
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('done'));
  assert.equal(await page.inputValue('#colormap'), 'jet');
  assert.equal(await page.inputValue('#o-integrated-gradients-steps'), '16');
  assert.match(await page.textContent('#input-name'), /7-sneaker\.png/);
  assert.match(await page.textContent('#explained'), /Sneaker/);
  // Options are validated in the page before anything is sent.
  const requests = seen.explains;
  await page.fill('#o-integrated-gradients-steps', '0');
  await page.click('#explain');
  await page.waitForSelector('#error:not([hidden])');
  assert.match(await page.textContent('#error'), /integrated-gradients: option steps/);
  assert.equal(seen.explains, requests);
  await page.fill('#o-integrated-gradients-steps', '16');
  // The data browser: filtered by predicted class, a thumbnail chosen from the keyboard.
  await page.click('#data-browser summary');
  await page.waitForFunction(() => document.querySelectorAll('#thumbs button').length === 10);
  await page.selectOption('#f-predicted', '1');
  await page.click('#data-filters button[type=submit]');
  await page.waitForFunction(() => document.querySelectorAll('#thumbs button').length === 1);
  assert.equal(await page.getAttribute('#thumbs button', 'data-id'), '1-trouser.png');
  await page.focus('#thumbs button');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.getElementById('explained').textContent.includes('Trouser'));
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('done'));
  assert.equal(new URLSearchParams((await page.evaluate(() => location.hash)).slice(1)).get('id'), '1-trouser.png');
  assert.deepEqual(seen.errors, []);
  await page.close();
});

test('the noise panel: SmoothGrad moves less than the gradient; the trust panel draws its checks', { timeout: 180000 }, async () => {
  const { page, seen } = await open(demo);
  await uploadAndExplain(page, ['saliency']);
  await page.click('#noise-run');
  await page.waitForSelector('[data-testid="maxsens-smoothgrad"]');
  const sens = async (m) => Number(await page.textContent(`[data-testid="maxsens-${m}"]`));
  assert.ok(await sens('smoothgrad') < await sens('saliency'), `smoothgrad ${await sens('smoothgrad')} vs saliency ${await sens('saliency')}`);
  assert.equal(await page.locator('#noise-rows .row[data-method="saliency"] canvas').count(), 5);
  await page.locator('#noise-panel').screenshot({ path: path.join(SHOTS, '3-noise.png') });
  await page.click('#trust-run');
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('checked'));
  assert.equal(await page.locator('#curves svg').count(), 2);
  assert.match(await page.textContent('#curves'), /random order — AUC 0\.\d+/);
  assert.equal(await page.locator('#randomisation canvas').count(), 5);  // trained + 4 layers
  assert.match(await page.textContent('#randomisation'), /fc2 randomised: ρ = /);
  await page.locator('#trust-panel').screenshot({ path: path.join(SHOTS, '4-trust.png') });
  assert.deepEqual(seen.errors, []);
  await page.close();
});

test('markup in labels, file names and error messages is shown as text; no script runs', { timeout: 120000 }, async () => {
  const { page, seen } = await open(evil);
  await page.check('#m-saliency');
  await page.setInputFiles('#file', path.join(evilDir, EVIL + '.png'));
  await page.waitForSelector('.card[data-key="saliency"] canvas');
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('done'));
  assert.ok((await page.textContent('#predictions')).includes(EVIL));
  assert.ok((await page.textContent('#explained')).includes(EVIL));
  assert.ok((await page.textContent('#input-name')).includes(EVIL + '.png'));
  // An error whose message repeats the request's text (the label itself is a valid target here).
  await page.fill('#target', EVIL + '?');
  await page.click('#explain');
  await page.waitForSelector('#error:not([hidden])');
  assert.ok((await page.textContent('#error')).includes(EVIL + '?'), await page.textContent('#error'));
  await page.waitForTimeout(300);
  assert.equal(await page.locator('img[src="x"]').count(), 0);
  assert.deepEqual(seen.dialogs, []);
  await page.screenshot({ path: path.join(SHOTS, '5-markup-as-text.png'), fullPage: true });
  // The only console errors: the browser's note of the 400 this test asked for.
  assert.deepEqual(seen.errors.filter((e) => !/status of 400/.test(e)), []);
  await page.close();
});

test('a long job shows progress and stops when cancelled', { timeout: 120000 }, async () => {
  const { page, seen } = await open(demo);
  await page.check('#m-smoothgrad');
  await page.fill('#o-smoothgrad-samples', '1000');
  await page.fill('#o-smoothgrad-batch-size', '1');
  await page.setInputFiles('#file', SAMPLE);
  await page.waitForFunction(() => { const p = document.querySelector('#jobs progress'); return p && p.value > 0; });
  const job = await page.getAttribute('#jobs .progress', 'data-job');
  await page.click('#cancel');
  await page.waitForSelector('#job-status[data-status="cancelled"]');
  const state = await (await fetch(demo.url + '/api/jobs/' + job)).json();
  assert.equal(state.status, 'cancelled');
  assert.ok(state.progress.smoothgrad < 1, 'stopped before the end: ' + state.progress.smoothgrad);
  await page.screenshot({ path: path.join(SHOTS, '6-cancelled.png') });
  assert.deepEqual(seen.errors, []);
  await page.close();
});

test('a tabular row: browsed as its columns, explained as signed bars of them', { timeout: 120000 }, async () => {
  const { page, seen } = await open(tabular);
  await page.check('#m-kernel-shap');
  await page.click('#data-browser summary');
  await page.waitForSelector('#thumbs button[data-id="512"] .row-id');
  await page.click('#thumbs button[data-id="512"]');
  await page.waitForSelector('.card[data-key="kernel-shap"] .bar-row');
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('done'));
  // The input panel: the row's 30 columns as the CSV has them.
  assert.equal(await page.locator('#input-row tr').count(), 30);
  assert.equal(await page.textContent('#input-row tr:first-child th'), 'mean_radius');
  assert.equal(await page.textContent('#input-row tr:first-child td'), '13.4');
  // The bars: the server's features in its order (the 12 largest, then "18 others"), red up, blue down.
  const answer = await (await fetch(tabular.url + '/api/explain', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id: '512', methods: ['kernel-shap'] }) })).json();
  const features = answer.results['kernel-shap'].features;
  const rows = page.locator('.card[data-key="kernel-shap"] .bar-row');
  assert.equal(await rows.count(), 13);
  for (let i = 0; i < 12; i++) {
    const f = features[i];
    assert.equal(await rows.nth(i).locator('.bar-label').textContent(), f.name + ' = ' + f.value);
    assert.equal(await rows.nth(i).locator('.bar').getAttribute('class'), 'bar ' + (f.attribution >= 0 ? 'pos' : 'neg'));
  }
  assert.equal(await rows.nth(12).locator('.bar-label').textContent(), '18 others');
  const widths = await rows.evaluateAll((rs) => rs.slice(0, 12).map((r) => r.querySelector('.bar').getBoundingClientRect().width));
  for (let i = 1; i < 12; i++) assert.ok(widths[i] <= widths[i - 1] + 0.5, 'bars sorted by |attribution|');
  assert.ok(widths[0] > 20, 'the largest bar is drawn');
  assert.match(await page.textContent('.card[data-key="kernel-shap"] .meta'), /^f\(baseline\) = \S+ → f\(x\) = /);
  // A row has no pixels: no resize choice, overlay controls, hover line or pixel-noise panel.
  for (const id of ['resize-label', 'controls', 'hover', 'noise-panel']) assert.equal(await page.isHidden('#' + id), true, id);
  await page.screenshot({ path: path.join(SHOTS, '7-tabular.png'), fullPage: true });
  assert.deepEqual(seen.errors, []);
  await page.close();
});

test('a text model: a text box, its methods only, tokens coloured by the server scores, markup as text', { timeout: 120000 }, async () => {
  const { page, seen } = await open(text);
  assert.equal(await page.isVisible('#text'), true);
  for (const id of ['#drop', '#input-canvas', '#data-browser', '#noise-panel', '#trust-panel']) assert.equal(await page.isVisible(id), false, id);
  assert.equal(await page.isDisabled('#m-grad-cam'), true, 'an image method is not offered');
  assert.equal(await page.isDisabled('#m-integrated-gradients'), false);
  const sentence = EVIL + ' Das ist ein Haus von Nikolaus';
  await page.fill('#text', sentence);
  await page.check('#m-integrated-gradients');
  assert.equal(await page.inputValue('#o-integrated-gradients-baseline'), 'pad', 'the default this model takes, not the image one');
  await page.click('#explain');
  await page.waitForSelector('.card[data-key="integrated-gradients"] .tok');
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('done'));
  const answer = await (await fetch(text.url + '/api/explain', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ text: sentence, methods: ['integrated-gradients'] }) })).json();
  const tokens = page.locator('.card[data-key="integrated-gradients"] .tok');
  assert.equal(await tokens.count(), answer.input.tokens.length);
  const scores = answer.results['integrated-gradients'].scores;
  const most = Math.max(...scores.map(Math.abs));
  for (let i = 0; i < scores.length; i++) {
    assert.equal(await tokens.nth(i).textContent(), answer.input.tokens[i]);
    assert.ok(Math.abs(Number(await tokens.nth(i).getAttribute('data-score')) - scores[i]) <= 1e-9 * Math.max(1, Math.abs(scores[i])));
    const bg = await tokens.nth(i).evaluate((e) => getComputedStyle(e).backgroundColor);
    const alpha = Number((/rgba?\(([^)]*)\)/.exec(bg)[1].split(',')[3] ?? '1'));
    assert.ok(Math.abs(alpha - Math.abs(scores[i]) / most) < 0.01 || (scores[i] === 0 && /rgba\(0, 0, 0, 0\)|0\)$/.test(bg)), i + ': ' + bg);
    if (Math.abs(scores[i]) > 0.05 * most) assert.match(bg, scores[i] > 0 ? /^rgba?\(0, 160, 60/ : /^rgba?\(220, 30, 30/);
  }
  assert.equal(await page.textContent('#predictions li:first-child button'), answer.predictions[0].label + ' — ' +
    (100 * answer.predictions[0].probability).toFixed(2) + ' % (class ' + answer.predictions[0].class + ')');
  assert.equal(await page.locator('.card img').count(), 0, 'the markup made no element');
  await page.screenshot({ path: path.join(SHOTS, '8-text.png'), fullPage: true });
  assert.deepEqual(seen.dialogs, []);
  assert.deepEqual(seen.errors, []);
  await page.close();
});

test('a dense output is explained by regions: its classes offered as region targets, the result names the region', { timeout: 120000 }, async () => {
  const { page, seen } = await open(dense);
  // The demo first, its data browser open; switching to the segmentation empties and closes it (it
  // kept the other model's data) and its targets are regions.
  assert.equal(await page.inputValue('#target'), 'top');
  await page.click('#data-browser summary');
  await page.waitForSelector('#thumbs button');
  await page.selectOption('#model', 'segmentation');
  await page.waitForFunction(() => document.querySelector('#target').value.startsWith('region:'));
  assert.equal(await page.locator('#thumbs button').count(), 0);
  assert.equal(await page.$eval('#data-browser', (d) => d.open), false);
  assert.equal(await page.inputValue('#target'), 'region:1');
  const choices = await page.$$eval('#target-choices option', (os) => os.map((o) => [o.value, o.textContent]));
  assert.deepEqual(choices, [['region:0', 'bg'], ['region:1', 'a'], ['region:2', 'b'], ['region:3', 'c']]);
  await page.check('#m-saliency');
  await page.selectOption('#resize', 'crop');
  await page.setInputFiles('#file', SAMPLE);
  await page.waitForSelector('.card[data-key="saliency"] canvas');
  const explained = await page.textContent('#explained');
  assert.equal(explained, 'Explaining: region:1');  // no "class null, 0.00 %"
  // A predicted class explains its region.
  await page.click('#predictions button[data-class="3"]');
  await page.waitForFunction(() => document.querySelector('#explained').textContent === 'Explaining: region:3');
  await page.screenshot({ path: path.join(SHOTS, 'dense-region.png') });
  // The trust panel checks the region (not "class null"); its value, far outside [0, 1], is drawn
  // on its own range: every point inside the frame, the axis' ends labelled with it.
  await page.click('#trust-run');
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('checked') || !document.getElementById('error').hidden);
  assert.equal(await page.$eval('#error', (b) => b.hidden ? '' : b.textContent), '');
  assert.equal(await page.locator('#curves svg').count(), 2);
  assert.match(await page.textContent('#curves'), /Deletion: saliency \(value, lower is better\)/);
  const ys = await page.$$eval('#curves polyline', (ls) => ls.flatMap((l) => l.getAttribute('points').split(' ').map((p) => Number(p.split(',')[1]))));
  assert.ok(ys.length > 0 && ys.every((v) => v >= 20 - 1e-6 && v <= 170 + 1e-6), 'a point outside the chart: ' + ys.join(' '));
  const ticks = await page.$$eval('#curves text.axis', (ts) => ts.map((t) => Number(t.textContent)));
  assert.ok(ticks.some((v) => v < 0 || v > 1), 'axis ' + ticks.join(', '));
  await page.locator('#trust-panel').screenshot({ path: path.join(SHOTS, 'dense-trust.png') });
  assert.deepEqual(seen.errors, []);
  await page.close();
});
