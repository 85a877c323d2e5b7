// The dashboard's Reports page in headless Chromium: an agent whose account has the AI histories of
// tests/common/ai_history.rs (2026-04-01 and 2026-04-02) opens Reports; the default range (the last
// 30 days) is empty and says so; the two days show the hand-computed AI outcomes as tiles, hand-off
// reasons, a stacked bar chart and a table, and the conversation figures beside them; a wide phone
// screen keeps the page inside its width; the dashboard and the widget follow the system's dark mode.
// Run by tests/browser.rs; screenshots go to SCREENSHOTS.
import { chromium } from "playwright-core";
import { check, deadline } from "./check.mjs";

const netia = process.env.NETIA_URL;
const screenshots = process.env.SCREENSHOTS;
deadline(60);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
const errors = [];
page.on("pageerror", (e) => errors.push(e.message));
page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
page.on("response", (r) => r.status() >= 400 && errors.push(`${r.status()} ${r.url()}`));

await page.goto(`${netia}/`);
await page.locator("#login-email").fill(process.env.AGENT_EMAIL);
await page.locator("#login-password").fill(process.env.AGENT_PASSWORD);
await page.locator("#login-form button[type=submit]").click();
await page.locator("body[data-live=true]").waitFor({ timeout: 20000 });

await page.locator("#open-reports").click();
await page.locator("body[data-reports=loaded]").waitFor({ timeout: 10000 });
check("Reports opens on the last 30 days", (await page.locator("#report-to").inputValue()) === new Date().toISOString().slice(0, 10));
check("an empty range says so", (await page.locator("#ai-chart-caption").textContent()).includes("No AI conversations"));
check("no bars for an empty range", (await page.locator("#ai-chart rect").count()) === 0);

await page.evaluate(() => delete document.body.dataset.reports);
await page.locator("#report-from").fill("2026-04-01");
await page.locator("#report-to").fill("2026-04-02");
await page.locator("#report-form button[type=submit]").click();
await page.locator("body[data-reports=loaded]").waitFor({ timeout: 10000 });

const tile = async (label, list = "#ai-tiles") => {
  const t = page.locator(`${list} .tile`, { hasText: label }).first();
  return (await t.locator("dd").allTextContents()).join(" | ");
};
check("conversations and how many the AI took part in", (await tile("Conversations")) === "7 | 6 with the AI", await tile("Conversations"));
check("resolved by the AI: 2 of 6", (await tile("Resolved by the AI")) === "33% | 2 of 6, no person needed", await tile("Resolved by the AI"));
check("handed to a person: 4 of 6", (await tile("Handed to a person")) === "67% | 4 of 6", await tile("Handed to a person"));
check("reopened within 7 days: 1 of 2", (await tile("Reopened within 7 days")) === "50% | 1 of 2 closed", await tile("Reopened within 7 days"));
check(
  "first human reply after a hand-off: median 60 s, average 70 s",
  (await tile("First human reply")) === "60 s | median of 3; average 70 s",
  await tile("First human reply"),
);
const reasons = await page.locator("#ai-reasons").textContent();
check("every hand-off reason is named", ["an agent replied: 1", "the customer asked: 1", "the AI chose to: 1", "the AI failed: 1"].every((r) => reasons.includes(r)), reasons);
check("two resolved bars and two handed-off bars", (await page.locator("#ai-chart rect.resolved").count()) === 2 && (await page.locator("#ai-chart rect.handed").count()) === 2);
check("each bar says what it is", (await page.locator("#ai-chart rect.handed title").first().textContent()) === "2026-04-01: 2 handed to a person");
const rows = await page.locator("#ai-days tbody tr").count();
const first = await page.locator("#ai-days tbody tr").first().locator("td").allTextContents();
check("a table row per day", rows === 2 && first.join(",") === "2026-04-01,4,3,1,2", [rows, first]);
const opened = await tile("Opened", "#conv-tiles");
check("conversation figures beside them", opened === "7", opened);
if (screenshots) await page.screenshot({ path: `${screenshots}/reports.png`, fullPage: true });

await page.setViewportSize({ width: 390, height: 800 });
const overflow = await page.evaluate(() => {
  const wide = [...document.querySelectorAll("body *")]
    .filter((e) => e.offsetParent !== null && e.getBoundingClientRect().right > window.innerWidth + 1)
    .map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ""}.${e.className}`);
  return { by: document.documentElement.scrollWidth - window.innerWidth, wide: wide.slice(0, 5) };
});
check("on a phone the page stays within its width", overflow.by <= 0, overflow);
if (screenshots) await page.screenshot({ path: `${screenshots}/reports-phone.png`, fullPage: true });

check("no script errors", errors.length === 0, errors);

// Dark mode follows the system setting, in the dashboard and in the widget; light stays light.
const background = async (scheme, path) => {
  const ctx = await browser.newContext({ colorScheme: scheme });
  const p = await ctx.newPage();
  await p.goto(`${netia}${path}`);
  const bg = await p.evaluate(() => getComputedStyle(document.body).backgroundColor);
  if (screenshots) await p.screenshot({ path: `${screenshots}/${scheme}-${path.slice(1, 5) || "dashboard"}.png` });
  await ctx.close();
  return bg;
};
const chat = `/chat?accountId=${process.env.ACCOUNT_ID}`;
check("the dashboard is dark in dark mode", (await background("dark", "/")) === "rgb(11, 17, 32)");
check("the dashboard is light in light mode", (await background("light", "/")) === "rgb(249, 250, 251)");
check("the widget is dark in dark mode", (await background("dark", chat)) === "rgb(17, 24, 39)");
check("the widget is light in light mode", (await background("light", chat)) === "rgb(255, 255, 255)");
await browser.close();
console.log("all checks passed");
