// Opens the agent's bottleneck page in headless Chromium (playwright-core
// driving the Debian chromium) for the slowest share of traffic, reads the
// ranking, clicks through to the first row's slowest example trace and
// reads its waterfall; screenshots both.
//
// Usage: node bottlenecks.js URL QUANTILE OUT_DIR
// Needs NODE_PATH to hold playwright-core.
"use strict";
const { run } = require("./page.js");

const [url, quantile, outDir] = process.argv.slice(2);
run(async (page, errors) => {
  await page.goto(url + "#bottlenecks");
  const rows = page.locator("#bottleneck-list tr.bottleneck");
  await rows.first().waitFor({ timeout: 10000 });
  // Options the page offers; the test's quantile is one of them.
  await page.selectOption("#bn-quantile", quantile);
  await page.waitForFunction(
    (q) => document.querySelector("#bn-quantile").value === q &&
      document.querySelectorAll("#bottleneck-list tr.bottleneck").length > 0,
    quantile);
  await page.waitForTimeout(500);
  await page.screenshot({ path: `${outDir}/bottlenecks.png`, fullPage: true });
  const ranked = await page.$$eval("#bottleneck-list tr.bottleneck", (trs) =>
    trs.map((r) => ({
      service: r.dataset.service,
      operation: r.dataset.operation,
      share: Number(r.dataset.share),
      team: r.children[1].textContent.trim(),
      errorsStarted: Number(r.children[6].textContent.trim()),
    })));
  await rows.first().locator("a").first().click();
  await page.locator("#waterfall .span-row").first().waitFor({ timeout: 10000 });
  await page.screenshot({ path: `${outDir}/bottleneck-trace.png`, fullPage: true });
  const waterfall = await page.$$eval("#waterfall .span-row", (trs) =>
    trs.map((r) => ({
      service: r.dataset.service,
      kind: r.dataset.kind,
      criticalMs: Number(r.dataset.criticalMs),
      criticalMarks: r.querySelectorAll(".crit").length,
    })));
  return { ranked, waterfall, hash: await page.evaluate(() => location.hash), errors };
});
