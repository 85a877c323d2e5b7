// Attachments in headless Chromium, widget and dashboard side by side: the customer attaches a
// picture in the widget; the agent sees its thumbnail in the conversation and downloads it byte for
// byte; opening the conversation marks the customer's messages "Seen" in the widget; the agent
// attaches a file from the dashboard and the widget offers it as a download; the main pane shows an
// empty state until a conversation is open; one author's messages in a row form a group; an .html
// file is served as an attachment with nosniff; another customer cannot fetch the files.
// Run by tests/browser.rs; screenshots go to SCREENSHOTS.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { check, deadline, launchChromium, rest, signIn } from "./check.mjs";

const netia = process.env.NETIA_URL;
const account = process.env.ACCOUNT_ID;
const screenshots = process.env.SCREENSHOTS;
deadline(90);
const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

const browser = await launchChromium();
const errors = [];
const customerContext = await browser.newContext({ viewport: { width: 400, height: 640 }, acceptDownloads: true });
const widget = await customerContext.newPage();
widget.on("pageerror", (e) => errors.push(`widget: ${e.message}`));
await widget.goto(`${netia}/chat?accountId=${account}`);
await widget.locator("body[data-ready=true]").waitFor({ timeout: 20000 });
check("the widget's attach button is ready", await widget.locator("#attach").isEnabled());

// A real PNG, drawn by the browser itself (640×480, so the thumbnail is smaller).
const picture = Buffer.from(
  await widget.evaluate(async () => {
    const canvas = new OffscreenCanvas(640, 480);
    const g = canvas.getContext("2d");
    g.fillStyle = "#f59e0b";
    g.fillRect(0, 0, 640, 480);
    g.fillStyle = "#1d4ed8";
    g.fillRect(80, 60, 320, 240);
    const blob = await canvas.convertToBlob({ type: "image/png" });
    return Array.from(new Uint8Array(await blob.arrayBuffer()));
  }),
);

await widget.locator("#message").fill("Here is my receipt");
await widget.locator("#message").press("Enter");
await widget.setInputFiles("#file", { name: "receipt.png", mimeType: "image/png", buffer: picture });
const widgetThumb = widget.locator("#messages .message.mine .file.image img");
await widget.waitForFunction(() => {
  const img = document.querySelector("#messages .message.mine .file.image img");
  return img && img.src.startsWith("blob:") && img.complete && img.naturalWidth > 0;
}, null, { timeout: 15000 });
const widgetSize = await widgetThumb.evaluate((img) => [img.naturalWidth, img.naturalHeight]);
check("the widget shows the uploaded picture as a thumbnail (at most 320 px)", widgetSize[0] === 320 && widgetSize[1] === 240, widgetSize);
const status = () => widget.locator("#messages .message.mine.latest .delivery").textContent();
check("the customer's latest message says it was sent", (await status()) === "Sent", await status());
if (screenshots) await widget.screenshot({ path: `${screenshots}/attachments-widget.png` });

// The agent: an empty main pane first, then the conversation with the thumbnail.
const agentContext = await browser.newContext({ viewport: { width: 1400, height: 850 }, acceptDownloads: true });
const agent = await agentContext.newPage();
agent.on("pageerror", (e) => errors.push(`dashboard: ${e.message}`));
await signIn(agent);
check("with no conversation open, the main pane says what to do", await agent.locator("#nothing-open").isVisible());
const conversationId = await widget.evaluate(() => document.body.dataset.conversation);
await agent.locator(`#conversations button[data-id="${conversationId}"]`).click();
await agent.locator("#conversation").waitFor({ state: "visible" });
check("opening a conversation replaces the empty state", await agent.locator("#nothing-open").isHidden());
await agent.waitForFunction(() => {
  const img = document.querySelector("#messages .message .file.image img");
  return img && img.complete && img.naturalWidth > 0;
}, null, { timeout: 15000 });
check("the dashboard shows the customer's picture as a thumbnail", true);
const grouped = await agent.locator("#messages .message.customer").evaluateAll((items) => items.map((i) => i.classList.contains("continued")));
check("the customer's two messages in a row form one group", grouped.length === 2 && !grouped[0] && grouped[1], grouped);

const [download] = await Promise.all([
  agent.waitForEvent("download", { timeout: 10000 }),
  agent.locator("#messages .file.image").click(),
]);
const downloaded = await readFile(await download.path());
check("the download keeps the file's name", download.suggestedFilename() === "receipt.png", download.suggestedFilename());
check("and is byte-identical to what the customer attached", sha256(downloaded) === sha256(picture), downloaded.length);

// The agent read the conversation: the widget says "Seen".
await widget.waitForFunction(
  () => (document.querySelector("#messages .message.mine.latest .delivery") || {}).textContent === "Seen",
  null,
  { timeout: 10000 },
);
check("the widget marks the customer's messages seen once an agent read them", true);

// The agent sends a file back; the widget offers it as a download.
const invoice = Buffer.from("Invoice 2026-118\nTotal: 42.00 EUR\n");
await agent.setInputFiles("#file-input", { name: "invoice.txt", mimeType: "text/plain", buffer: invoice });
await agent.locator("#messages .message.agent .file", { hasText: "invoice.txt" }).waitFor({ timeout: 10000 });
const widgetFile = widget.locator("#messages .message:not(.mine) .file", { hasText: "invoice.txt" });
await widgetFile.waitFor({ timeout: 10000 });
const [received] = await Promise.all([widget.waitForEvent("download", { timeout: 10000 }), widgetFile.click()]);
check("the customer downloads the agent's file intact", (await readFile(await received.path())).equals(invoice));
if (screenshots) await agent.screenshot({ path: `${screenshots}/attachments-dashboard.png` });

// An HTML page attached in the widget is served as a download of unknown type, never rendered.
await widget.setInputFiles("#file", { name: "page.html", mimeType: "text/html", buffer: Buffer.from("<!DOCTYPE html><html><script>alert(1)</script></html>") });
await widget.locator("#messages .message.mine .file", { hasText: "page.html" }).waitFor({ timeout: 10000 });
const customerToken = await widget.evaluate((id) => JSON.parse(localStorage.getItem(`netia:${id}:customer`)).token, account);
const messages = await rest("GET", `/api/conversations/${conversationId}/messages`, customerToken);
const files = messages.flatMap((m) => m.attachments);
const page = files.find((f) => f.file_name === "page.html");
const fetched = await fetch(`${netia}${page.url}`, { headers: { authorization: `Bearer ${customerToken}` } });
check("the .html upload is recorded as HTML (sniffed)", page.content_type === "text/html", page);
check("and served as an attachment", (fetched.headers.get("content-disposition") || "").startsWith("attachment;"), fetched.headers.get("content-disposition"));
check("of type application/octet-stream", fetched.headers.get("content-type") === "application/octet-stream", fetched.headers.get("content-type"));
check("with nosniff", fetched.headers.get("x-content-type-options") === "nosniff");
// Another visitor cannot fetch this conversation's files.
const stranger = await rest("POST", "/api/customers", null, { account_id: account, name: "Mallory" });
const receipt = files.find((f) => f.file_name === "receipt.png");
for (const url of [receipt.url, receipt.thumbnail_url, page.url]) {
  const answer = await fetch(`${netia}${url}`, { headers: { authorization: `Bearer ${stranger.token}` } });
  check(`another customer gets 404 for ${url.split("?")[1] ? "a thumbnail" : "a file"}`, answer.status === 404, answer.status);
}

check("no page errors", errors.length === 0, errors);
await browser.close();
console.log("all checks passed");
