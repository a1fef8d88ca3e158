// The page at / in headless Chromium: type a question, press Ask, and see
// an answer appear in every model's column. Usage: node page.mjs URL CHROMIUM
import { chromium } from "playwright-core";

const [url, executablePath] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-gpu"] });
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", e => errors.push(String(e)));
  page.on("request", r => { if (!r.url().startsWith(url)) errors.push("fetched from elsewhere: " + r.url()); });
  await page.goto(url + "/");
  await page.waitForSelector(".answer");
  const columns = await page.locator(".answer").count();
  await page.fill("#question", "What is Lamini?");
  await page.fill("#max_tokens", "12");
  await page.click("#go");
  await page.waitForFunction(n => [...document.querySelectorAll(".answer .meta")].filter(m => /finished/.test(m.textContent)).length === n,
                             columns, { timeout: 30000 });
  const answers = await page.locator(".answer pre").allTextContents();
  if (errors.length) throw new Error(errors.join("; "));
  if (answers.some(a => a.length === 0)) throw new Error("an empty answer: " + JSON.stringify(answers));
  console.log(`ok ${columns} columns answered: ${JSON.stringify(answers)}`);
} finally {
  await browser.close();
}
