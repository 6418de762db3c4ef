// The dashboard in a real browser: Debian's headless Chromium driven by playwright-core,
// against the node started by run.sh. Usage: node dashboard.mjs URL EXPECTED.json OUT_DIR
// EXPECTED.json: [{hotkey, stake, endpoint, stake_tx}] for uids 0, 1, ... as run.sh made them.
// Every check throws on a mismatch; the exit code is non-zero then.
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";

const [url, expectedFile, out] = process.argv.slice(2);
const expected = JSON.parse(readFileSync(expectedFile, "utf8"));
const origin = new URL(url).origin;
const wsOrigin = origin.replace(/^http/, "ws");
const agora = process.env.AGORA;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // CI runs as root in a container, where Chromium's sandbox cannot start.
  args: ["--no-sandbox"],
});
const failures = [];
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 800 } });
  // Every request the page makes is recorded; one leaving the node is aborted and fails the test.
  const requests = [];
  await context.route("**/*", (route) => {
    const u = route.request().url();
    requests.push(u);
    return new URL(u).origin === origin ? route.continue() : route.abort();
  });
  page = await context.newPage();
  page.on("websocket", (ws) => requests.push(ws.url()));
  page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && failures.push(`console: ${m.text()}`));

  const step = (name) => console.log(`- ${name}`);
  const text = (sel) => page.locator(sel).innerText();
  const row = (uid) => page.locator(`#neurons tr[data-uid="${uid}"]`);
  const cell = (uid, col) => row(uid).locator(`td[data-col="${col}"]`).innerText();

  step("network page: the rows run.sh registered");
  await page.goto(url);
  await page.waitForSelector(`#neurons tr >> nth=${expected.length - 1}`);
  assert.equal(await page.locator("#neurons tr").count(), expected.length);
  assert.equal(await text("#n"), String(expected.length));
  assert.match(await text("#mechanism"), /^yuma \(tempo 100\)$/);
  for (const [uid, e] of expected.entries()) {
    assert.equal(await row(uid).getAttribute("data-hotkey"), e.hotkey, `uid ${uid} hotkey`);
    assert.equal(await cell(uid, "stake"), e.stake, `uid ${uid} stake`);
    assert.equal(await cell(uid, "endpoint"), e.endpoint, `uid ${uid} endpoint`);
  }

  step("localnet panel: the roles and the judge's figures from the node's --localnet-file");
  await page.waitForSelector("#localnet-summary");
  assert.equal(await text("#localnet-summary"), "block 12 of 500, epoch 1; the independent judge's value measured at block 10; Spearman(incentive now, judge) = 0.500");
  const peers = await page.locator("#localnet tbody tr").evaluateAll((rs) => rs.map((r) => [...r.cells].map((c) => c.innerText)));
  assert.deepEqual(peers, [["0", "expert-0", "honest", "2.2500"], ["1", "noise-0", "noise", "0.0000"], ["2", "cabal-0", "cabal", "-"]]);
  const curves = await page.locator('svg[data-series="loss"] polyline').evaluateAll((ls) =>
    ls.map((l) => [l.dataset.uid, l.dataset.heights, l.dataset.values]),
  );
  assert.deepEqual(curves, [["0", "5,10", "4.5,3.75"], ["1", "10", "5.25"]]);

  step("sorting by stake, largest first, on the node");
  await page.click('th[data-sort="stake"]');
  await page.waitForFunction(() => document.querySelector("#neurons tr")?.dataset.uid === "2");
  const order = await page.locator("#neurons tr").evaluateAll((rs) => rs.map((r) => r.dataset.uid));
  assert.deepEqual(order, ["2", "1", "0"]);
  await page.click('th[data-sort="uid"]');
  await page.waitForFunction(() => document.querySelector("#neurons tr")?.dataset.uid === "0");

  step("a new block updates the page without a reload");
  await page.evaluate(() => (window.__sameDocument = true));
  const h0 = Number(await text("#height"));
  execFileSync(agora, ["tx", "stake", "--wallet", "w1", "--hotkey", "h", "--amount", "1"], { stdio: "ignore" });
  const raised = (Number(expected[0].stake) + 1).toString();
  await page.waitForFunction((s) => document.querySelector('#neurons tr[data-uid="0"] td[data-col="stake"]')?.innerText === s, raised, { timeout: 15000 });
  assert.ok(Number(await text("#height")) > h0, "the height moved");
  assert.equal(await page.evaluate(() => window.__sameDocument), true, "no reload");
  assert.match(await text("#live"), /^live · block \d+$/);
  await page.screenshot({ path: `${out}/network.png`, fullPage: true });

  step("history page: each chart has a line per neuron with the node's data points");
  await page.goto(`${url}/#/history`);
  const line = (series, uid) => page.locator(`svg[data-series="${series}"] polyline[data-uid="${uid}"]`);
  await line("stake_share", 0).waitFor();
  const stakes = expected.map((e, uid) => Number(e.stake) + (uid === 0 ? 1 : 0));
  const total = stakes.reduce((a, b) => a + b, 0);
  for (const series of ["stake_share", "incentive", "emission"]) {
    assert.equal(await page.locator(`svg[data-series="${series}"] polyline`).count(), expected.length, series);
  }
  for (const [uid, stake] of stakes.entries()) {
    // Both attributes in one call: the page redraws the charts at every block.
    const [heights, values] = await line("stake_share", uid).evaluate((l) =>
      ["data-heights", "data-values"].map((a) => l.getAttribute(a).split(",").map(Number)),
    );
    assert.ok(heights.length >= 2 && heights.length === values.length, `uid ${uid}: ${heights.length} points`);
    assert.ok(heights.every((h, k) => k === 0 || h > heights[k - 1]), "heights ascend");
    // The last sample is after the extra stake (the page refreshed since it showed in the table).
    assert.ok(Math.abs(values[values.length - 1] - stake / total) < 1e-4, `uid ${uid} share ${values.at(-1)} vs ${stake / total}`);
  }
  // No epoch has run yet (tempo 100): incentive is 0 at every point.
  assert.match(await line("incentive", 2).getAttribute("data-values"), /^0(,0)*$/);
  await page.screenshot({ path: `${out}/history.png`, fullPage: true });

  step("neuron page: its row, its weights given and received");
  await page.goto(`${url}/#/`); // follow the link from the network table
  await row(0).locator('td[data-col="uid"] a').click();
  await page.waitForSelector("#neuron-hotkey");
  assert.equal(await text("#neuron-hotkey"), expected[0].hotkey);
  assert.equal(await text("#neuron-stake"), (Number(expected[0].stake) + 1).toString());
  const pairs = (id) => page.locator(`#${id} tbody tr[data-uid]`).evaluateAll((rs) => rs.map((r) => [r.dataset.uid, r.querySelector('[data-col="value"]').innerText]));
  assert.deepEqual(await pairs("given"), [["1", "0.2500"], ["2", "0.7500"]]);
  assert.deepEqual(await pairs("received"), []);
  assert.equal(await page.locator('#neuron svg[data-series="stake_share"] polyline').count(), 1);
  await page.screenshot({ path: `${out}/neuron.png`, fullPage: true });
  await page.goto(`${url}/#/neuron/2`);
  await page.waitForSelector("#received");
  assert.deepEqual(await pairs("received"), [["0", "0.7500"]]);
  await page.goto(`${url}/#/neuron/7`);
  await page.waitForSelector("#error");
  assert.match(await text("#error"), /no neuron with uid 7: the network has 3 neurons \(code -33013\)/);

  step("blocks page: the last blocks with their transactions");
  // A fresh transaction, so it is among the last 20 blocks however slow the steps above were.
  const sent = execFileSync(agora, ["tx", "transfer", "--dev-account", "alice", "--to", expected[0].hotkey, "--amount", "1"], { encoding: "utf8" });
  const txId = sent.match(/^transaction ([0-9a-f]{64})$/m)[1];
  await page.goto(`${url}/#/blocks`);
  await page.waitForSelector("#blocks tr");
  const link = page.locator(`#blocks a[href="#/tx/${txId}"]`);
  await link.waitFor();
  assert.match(await link.locator("xpath=..").innerText(), /transfer applied$/);
  await page.screenshot({ path: `${out}/blocks.png`, fullPage: true });

  step("transaction page: outcome, call and block");
  await link.click();
  await page.waitForSelector("#tx-outcome");
  assert.equal(await text("#tx-state"), "included");
  assert.equal(await text("#tx-outcome"), "applied");
  assert.equal(await text("#tx-call"), "transfer");
  await page.screenshot({ path: `${out}/transaction.png`, fullPage: true });

  step("transaction page: an older transaction, an unknown id and a malformed one");
  await page.goto(`${url}/#/tx/${expected[2].stake_tx}`);
  await page.waitForSelector("#tx-outcome");
  assert.equal(await text("#tx-outcome"), "applied");
  assert.equal(await text("#tx-call"), "add_stake");
  await page.goto(`${url}/#/tx/${"0".repeat(64)}`);
  await page.waitForSelector("#tx-state");
  assert.equal(await text("#tx-state"), "unknown");
  await page.goto(`${url}/#/tx/not-a-hash`);
  await page.waitForSelector("#error");
  assert.match(await text("#error"), /code -32602/);

  step("the page asked nothing of anyone but the node");
  const outside = requests.filter((u) => ![origin, wsOrigin].includes(new URL(u).origin));
  assert.deepEqual(outside, []);
  assert.ok(requests.some((u) => u.startsWith(wsOrigin)), "the page subscribed over the WebSocket");
  assert.deepEqual(failures, []);
  console.log(`dashboard: every check passed (${requests.length} requests, all to ${origin}); screenshots in ${out}`);
} catch (e) {
  // What the page looked like when a check failed.
  if (page) await page.screenshot({ path: `${out}/failure.png`, fullPage: true }).catch(() => {});
  console.error(`dashboard: FAILED (screenshot in ${out}/failure.png): ${e.stack || e}`);
  if (failures.length) console.error(failures.join("\n"));
  process.exitCode = 1;
} finally {
  await browser.close();
}
