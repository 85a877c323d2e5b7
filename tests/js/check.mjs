// What every test script shares: a named check that ends the run on failure, and a deadline for the
// whole run. tests/realtime.rs and tests/browser.rs look for "all checks passed".

/** Prints `ok   name`, or `FAIL name: detail` and exits with 1. */
export function check(name, condition, detail) {
  if (!condition) {
    console.log(`FAIL ${name}${detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
    process.exit(1);
  }
  console.log(`ok   ${name}`);
}

/** Fails the run if it is still going after `seconds`. */
export function deadline(seconds) {
  setTimeout(() => {
    console.log(`FAIL the run took longer than ${seconds} s`);
    process.exit(1);
  }, seconds * 1000).unref();
}

/** Headless Chromium (Debian's, or CHROMIUM), as every browser test starts it. */
export async function launchChromium() {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

/** Signs the test's agent (AGENT_EMAIL, AGENT_PASSWORD) in to the dashboard on `page` and waits
 *  until the inbox is live. */
export async function signIn(page) {
  await page.goto(`${process.env.NETIA_URL}/`);
  await page.locator("#login-email").fill(process.env.AGENT_EMAIL);
  await page.locator("#login-password").fill(process.env.AGENT_PASSWORD);
  await page.locator("#login-form button[type=submit]").click();
  await page.locator("body[data-live=true]").waitFor({ timeout: 20000 });
}

/** A JSON call to Netia's REST API (with `token` as bearer when given): its `data`; throws on an
 *  error status. */
export async function rest(method, path, token, body) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${process.env.NETIA_URL}${path}`, { method, headers, body: body && JSON.stringify(body) });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
  return response.status === 204 ? null : (await response.json()).data;
}
