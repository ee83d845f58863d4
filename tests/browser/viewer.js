// Opens the agent's viewer in headless Chromium (playwright-core driving the
// Debian chromium), finds the trace of one request, opens its waterfall and
// prints what it shows as JSON; screenshots every page it visits.
//
// Usage: node viewer.js URL PATH_MARKER OUT_DIR
// Needs NODE_PATH to hold playwright-core.
"use strict";
const { run } = require("./page.js");

const [url, marker, outDir] = process.argv.slice(2);
run(async (page, errors) => {
  await page.goto(url);
  // The list refreshes every 5 s; the trace may need a refresh to appear.
  const row = page.locator(".trace-row", { hasText: marker }).first();
  await row.waitFor({ timeout: 20000 });
  await page.screenshot({ path: `${outDir}/viewer-traces.png`, fullPage: true });
  const traceId = await row.getAttribute("data-trace-id");
  await row.click();
  await page.locator("#waterfall .span-row").first().waitFor({ timeout: 10000 });
  // Details of the first span open on a click.
  await page.locator("#waterfall .span-row").first().click();
  await page.screenshot({ path: `${outDir}/viewer-waterfall.png`, fullPage: true });
  const spans = await page.$$eval("#waterfall .span-row", (rows) =>
    rows.map((r) => ({
      service: r.dataset.service,
      name: r.dataset.name,
      kind: r.dataset.kind,
      depth: Number(r.dataset.depth),
      duration: r.children[2].textContent.trim(),
      criticalMs: Number(r.dataset.criticalMs),
      criticalMarks: r.querySelectorAll(".crit").length,
    })));
  const details = await page.locator("#waterfall .attrs").first().textContent();
  await page.click("#tab-map");
  await page.locator("#map-graph svg .node").first().waitFor({ timeout: 10000 });
  await page.screenshot({ path: `${outDir}/viewer-service-map.png`, fullPage: true });
  const edges = await page.$$eval("#map-graph .edge", (gs) =>
    gs.map((g) => ({ caller: g.dataset.caller, callee: g.dataset.callee, label: g.textContent.trim() })));
  await page.click("#tab-bottlenecks");
  await page.selectOption("#bn-quantile", "0");
  await page.locator("#bottleneck-list tr.bottleneck").first().waitFor({ timeout: 10000 });
  await page.screenshot({ path: `${outDir}/viewer-bottlenecks.png`, fullPage: true });
  const bottlenecks = await page.$$eval("#bottleneck-list tr.bottleneck", (rows) =>
    rows.map((r) => ({ service: r.dataset.service, operation: r.dataset.operation, share: Number(r.dataset.share) })));
  return { traceId, spans, details, edges, bottlenecks, errors };
});
