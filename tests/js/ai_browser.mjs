// The widget with AI replies on (a fake OpenAI-compatible model that takes a moment): the customer
// writes, sees "AI is typing…", then the AI's answer, labelled as such. Run by tests/browser.rs.
import { chromium } from "playwright-core";
import { check, deadline } from "./check.mjs";

const netia = process.env.NETIA_URL;
const account = process.env.ACCOUNT_ID;
deadline(60);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const page = await (await browser.newContext({ viewport: { width: 390, height: 700 } })).newPage();
await page.goto(`${netia}/chat?accountId=${account}`);
await page.locator("body[data-ready=true]").waitFor({ timeout: 20000 });
await page.locator("#message").fill("Do you repair e-bikes?");
await page.locator("#message").press("Enter");
await page.locator("#typing", { hasText: "AI is typing" }).waitFor({ timeout: 15000 });
check("the customer sees the AI typing", true);
const answer = page.locator(".message[data-type=bot]", { hasText: "Yes, we repair e-bikes." });
await answer.waitFor({ timeout: 15000 });
check("the AI's answer arrives live", true);
check("it is labelled as the AI's", (await answer.locator(".meta").textContent()) === "AI assistant");
check("the typing indicator is gone", await page.locator("#typing").isHidden());
await browser.close();
console.log("all checks passed");
process.exit(0);
