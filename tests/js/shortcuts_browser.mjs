// The dashboard's keyboard shortcuts in headless Chromium: j / k move through the inbox and open the
// conversation, r goes to the reply box (where letters are text, not shortcuts; Esc leaves it), e
// closes the conversation, ? opens the help and Esc closes it.
// Run by tests/browser.rs.
import { check, deadline, launchChromium, rest, signIn } from "./check.mjs";

const netia = process.env.NETIA_URL;
const account = process.env.ACCOUNT_ID;
deadline(60);

const browser = await launchChromium();
const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
const errors = [];
page.on("pageerror", (e) => errors.push(e.message));

const post = (path, token, body) => rest("POST", path, token, body);
for (const name of ["Ada Lovelace", "Alan Turing"]) {
  const customer = await post("/api/customers", null, { account_id: account, name });
  await post("/api/conversations", customer.token, { account_id: account, customer_id: customer.id });
}

await signIn(page);
await page.locator("#conversations button").nth(1).waitFor({ timeout: 10000 });
const names = await page.locator("#conversations .who").allTextContents();
const current = () => page.locator("#conversations button[aria-current=true] .who").textContent();
const opened = async (name) => {
  await page.locator("#conv-title", { hasText: name }).waitFor({ timeout: 10000 });
  return (await current()) === name;
};

await page.keyboard.press("j");
check("j opens the first conversation", await opened(names[0]), names);
await page.keyboard.press("j");
check("j again opens the next one", await opened(names[1]));
await page.keyboard.press("k");
check("k goes back", await opened(names[0]));

await page.keyboard.press("r");
check("r goes to the reply box", await page.evaluate(() => document.activeElement.id === "reply"));
await page.keyboard.type("jk");
check("letters typed there are text, not shortcuts", (await page.locator("#reply").inputValue()) === "jk" && (await current()) === names[0]);
await page.keyboard.press("Escape");
check("Esc leaves the reply box", await page.evaluate(() => document.activeElement.id !== "reply"));

await page.keyboard.press("e");
await page.locator("#toggle-status", { hasText: "Reopen" }).waitFor({ timeout: 10000 });
check("e closes the conversation", true);

await page.keyboard.press("?");
check("? opens the shortcuts help", await page.locator("#shortcuts").isVisible());
await page.keyboard.press("j");
check("shortcuts wait while the help is open", (await page.locator("#conv-title").textContent()) === names[0]);
await page.keyboard.press("Escape");
check("Esc closes it", await page.locator("#shortcuts").isHidden());
check("no page errors", errors.length === 0, errors);

await browser.close();
console.log("all checks passed");
process.exit(0);
