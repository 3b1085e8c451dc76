// Debian's chromium, headless, for the page tests (no browser download).
"use strict";
const puppeteer = require("puppeteer-core");

module.exports = async function launch() {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  return { browser, page };
};
