// What the browser scripts share: headless Chromium (playwright-core driving
// the Debian chromium, or CHROMIUM), one page whose errors are collected,
// and a non-zero exit with the stack when the script throws.
"use strict";
const { chromium } = require("playwright-core");

// Runs `script(page, errors)` on a fresh 1400x900 page; prints what it
// returns as JSON.
function run(script) {
  (async () => {
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-gpu"],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
      const errors = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      console.log(JSON.stringify(await script(page, errors)));
    } finally {
      await browser.close();
    }
  })().catch((e) => {
    console.error(String(e && e.stack || e));
    process.exit(1);
  });
}

module.exports = { run };
