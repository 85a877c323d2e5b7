// The dashboard's inbox list in headless Chromium, on a desktop (1400×850) and a phone (375×812):
// each item (avatar, name, time, one-line preview, channel, priority, assignee) stays under 100 px
// tall and inside its column; scrolling to the end loads the next page (cursor paging); search finds
// a conversation by the text of a message that is not its last; an empty search says so.
// Screenshots (light, dark, phone) go to SCREENSHOTS. Run by tests/browser.rs.
import { check, deadline, launchChromium, rest, signIn } from "./check.mjs";

const netia = process.env.NETIA_URL;
const account = process.env.ACCOUNT_ID;
const agentToken = process.env.AGENT_TOKEN;
const screenshots = process.env.SCREENSHOTS;
deadline(120);

const call = rest;
const me = await call("GET", "/api/me", agentToken);
const conversations = [];
for (let n = 1; n <= 60; n++) {
  const name = n === 7 ? "Maximiliane Wilhelmina von Habsburg-Lothringen-Sachsen-Coburg" : `Customer ${n}`;
  const customer = await call("POST", "/api/customers", null, { account_id: account, name, email: `c${n}@example.com` });
  const conversation = await call("POST", "/api/conversations", customer.token, { account_id: account, customer_id: customer.id });
  conversations.push(conversation.id);
}
const say = (id, body) => call("POST", `/api/conversations/${id}/messages`, agentToken, { body });
await say(conversations[6], "A very long answer ".repeat(30));
await say(conversations[10], "The refund for order 8812 is on its way");
await say(conversations[10], "Anything else I can do?");
await call("PATCH", `/api/conversations/${conversations[6]}`, agentToken, { priority: "priority", assignee_id: me.id });

const browser = await launchChromium();
const errors = [];

async function open(viewport, colorScheme = "light") {
  const page = await (await browser.newContext({ viewport, colorScheme })).newPage();
  page.on("pageerror", (e) => errors.push(e.message));
  await signIn(page);
  await page.locator("#conversations > li").nth(9).waitFor({ timeout: 10000 });
  return page;
}

/** Every list item's height, and whether each lies inside the list's column. */
const measure = (page) =>
  page.evaluate(() => {
    const column = document.getElementById("inbox").getBoundingClientRect();
    return [...document.querySelectorAll("#conversations > li")].map((li) => {
      const r = li.getBoundingClientRect();
      return { height: r.height, inside: r.left >= column.left - 0.5 && r.right <= column.right + 0.5 };
    });
  });

for (const [label, viewport] of [["desktop", { width: 1400, height: 850 }], ["phone", { width: 375, height: 812 }]]) {
  const page = await open(viewport);
  const items = await measure(page);
  const tallest = Math.max(...items.map((i) => i.height));
  check(`${label}: every list item is under 100 px tall`, tallest < 100, tallest);
  check(`${label}: and inside its column`, items.every((i) => i.inside), items.filter((i) => !i.inside).length);
  const firstBottom = await page.evaluate(() => document.querySelector("#conversations > li").getBoundingClientRect().bottom);
  check(`${label}: the inbox is on the first screen`, firstBottom <= viewport.height, firstBottom);
  const long = page.locator("#conversations button", { hasText: "Maximiliane" });
  const nameHeight = await long.locator(".who").evaluate((e) => e.getBoundingClientRect().height);
  check(`${label}: a long name is cut short on one line`, nameHeight < 24, nameHeight);
  check(`${label}: the priority mark shows`, await long.locator(".badge.priority").isVisible());
  check(`${label}: the assignee shows`, (await long.locator(".avatar.small").getAttribute("aria-label")).startsWith("Assigned to"));
  if (screenshots) await page.screenshot({ path: `${screenshots}/inbox-${label}.png` });

  if (label === "phone") {
    await page.locator("#conversations button", { hasText: "Customer 11" }).click();
    await page.locator("#messages .message", { hasText: "Anything else" }).waitFor({ timeout: 10000 });
    check("phone: the open conversation takes the list's place", await page.locator("#inbox").isHidden());
    const reply = await page.locator("#reply").evaluate((e) => e.getBoundingClientRect().bottom);
    check("phone: with its reply box on the screen", reply <= viewport.height, reply);
    if (screenshots) await page.screenshot({ path: `${screenshots}/conversation-phone.png` });
    await page.locator("#back-to-inbox").click();
    check("phone: and goes back to the list", (await page.locator("#inbox").isVisible()) && (await page.locator("#conversation").isHidden()));
  }
  if (label === "desktop") {
    check("the first page holds 50", items.length === 50, items.length);
    await page.locator("#inbox").evaluate((list) => (list.scrollTop = list.scrollHeight));
    await page.waitForFunction(() => document.querySelectorAll("#conversations > li").length === 60, null, { timeout: 10000 });
    check("scrolling to the end loads the rest, nothing twice", new Set(await page.locator("#conversations button").evaluateAll((b) => b.map((x) => x.dataset.id))).size === 60);

    await page.locator("#search").fill("order 8812");
    await page.waitForFunction(() => document.querySelectorAll("#conversations > li").length === 1, null, { timeout: 10000 });
    check("search finds a conversation by an earlier message's text", (await page.locator("#conversations .who").textContent()) === "Customer 11");
    await page.locator("#search").fill("no such words anywhere");
    await page.locator("#empty", { hasText: "No conversations match" }).waitFor({ timeout: 10000 });
    check("an empty search says so", true);
    await page.locator("#search").fill("");
    await page.waitForFunction(() => document.querySelectorAll("#conversations > li").length === 50, null, { timeout: 10000 });
    check("clearing the search brings the inbox back", true);
  }
}

const dark = await open({ width: 1400, height: 850 }, "dark");
const background = await dark.locator("#inbox").evaluate((e) => getComputedStyle(e).backgroundColor);
check("the dark scheme darkens the inbox", background === "rgb(17, 24, 39)", background);
if (screenshots) await dark.screenshot({ path: `${screenshots}/inbox-dark.png` });

check("no page errors", errors.length === 0, errors);
await browser.close();
console.log("all checks passed");
process.exit(0);
