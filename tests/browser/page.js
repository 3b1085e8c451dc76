// Opens btt's live page in Debian's headless chromium (puppeteer-core, no
// browser download) and reports what it sees, one line per step, for the
// e2e test that drives the swarm around it:
//   changed   the percent and the piece map moved without a reload
//   stop      (the test stops the only seeder now)
//   no-peers  the waiting read's cause reads "no peers"
//   back      after the seeder returned: the cause is gone and data flows
//   done      the screenshot is saved
// Usage: node page.js URL SCREENSHOT.png
"use strict";
const launch = require("./launch");

const [url, shot] = process.argv.slice(2);
const say = (s) => process.stdout.write(s + "\n");

async function until(page, what, f, secs) {
  const end = Date.now() + secs * 1000;
  for (;;) {
    const v = await page.evaluate(f);
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 250));
  }
}

(async () => {
  const { browser, page } = await launch();
  try {
    await page.goto(url, { waitUntil: "domcontentloaded" });
    // Set once: a reload would clear it.
    await page.evaluate(() => { window.__sameLoad = true; });
    const state = () => {
      const s = document.querySelector("section.t");
      if (!s || !window.__sameLoad) return null;
      return {
        sub: s.querySelector(".sub").textContent,
        map: s.querySelector("canvas.map").toDataURL(),
        waits: s.querySelector(".waits").textContent,
      };
    };
    const first = await until(page, "the first event", state, 30);
    const moved = await until(page, "the percent and the map to move", `(() => {
      const s = (${state})();
      return s && s.sub !== ${JSON.stringify(first.sub)} && s.map !== ${JSON.stringify(first.map)} ? s : null;
    })()`, 90);
    say("changed " + JSON.stringify({ before: first.sub, after: moved.sub }));
    say("stop");
    const gone = await until(page, "the cause 'no peers'", `(() => {
      const s = (${state})();
      return s && /no peers/.test(s.waits) ? s : null;
    })()`, 60);
    say("no-peers " + JSON.stringify(gone.waits));
    await until(page, "the seeder back", `(() => {
      const s = (${state})();
      return s && !/no peers/.test(s.waits) && s.sub !== ${JSON.stringify(gone.sub)} ? s : null;
    })()`, 90);
    say("back");
    if (!(await page.evaluate(() => window.__sameLoad))) throw new Error("the page reloaded");
    await page.screenshot({ path: shot, fullPage: true });
  } finally {
    await browser.close();
  }
  say("done");
})().catch((e) => {
  say("error " + e.message);
  process.exit(1);
});
