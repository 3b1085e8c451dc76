// A screenshot of btt's live page once it shows what the test waits for.
// Usage: node shot.js URL SCREENSHOT.png REGEX  (REGEX: text the page must show)
"use strict";
const launch = require("./launch");

const [url, shot, want] = process.argv.slice(2);
(async () => {
  const { browser, page } = await launch();
  try {
    await page.goto(url, { waitUntil: "domcontentloaded" });
    const re = new RegExp(want);
    const end = Date.now() + 30000;
    for (;;) {
      const text = await page.evaluate(() => document.body.innerText);
      if (re.test(text)) break;
      if (Date.now() > end) throw new Error("the page never showed " + want + ":\n" + text);
      await new Promise((r) => setTimeout(r, 250));
    }
    await page.screenshot({ path: shot, fullPage: true });
  } finally {
    await browser.close();
  }
  process.stdout.write("done\n");
})().catch((e) => {
  process.stdout.write("error " + e.message + "\n");
  process.exit(1);
});
