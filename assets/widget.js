// Netia's embed script: a chat button and the /chat iframe, on any site.
//
//   <script src="https://netia.example.com/widget.js" data-account-id="…" data-title="Support"
//           data-primary-color="#1890ff" async></script>
//
// A signed-in user of the site: data-external-id="…" data-user-hash="…" (hex HMAC-SHA256 of the
// external id with the account's identity secret, computed on the site's server), and optionally
// data-customer-email / data-customer-name. Papercups' config.customer {external_id, email, name,
// user_hash} is read too.
//
// Papercups' snippet works too (window.Papercups = { config: { token, baseUrl, … } } before the tag).
(function () {
  "use strict";
  if (window.__netiaWidget) return;
  window.__netiaWidget = true;

  const script =
    document.currentScript ||
    Array.from(document.getElementsByTagName("script")).find((s) => /\/widget\.js(\?|$)/.test(s.src));
  const scriptOrigin = script ? new URL(script.src, window.location.href).origin : window.location.origin;
  const legacy = (window.Papercups && window.Papercups.config) || {};
  const data = (script && script.dataset) || {};
  const NAMES = [
    "token", "accountId", "inbox", "title", "subtitle", "primaryColor", "greeting",
    "newMessagePlaceholder", "showAgentAvailability", "isBrandingHidden", "companyName", "baseUrl",
  ];
  const config = {};
  NAMES.forEach((name) => {
    const value = data[name] !== undefined ? data[name] : legacy[name];
    if (value !== undefined && value !== null) config[name] = String(value);
  });
  const legacyCustomer = (legacy.customer && typeof legacy.customer === "object" && legacy.customer) || {};
  [
    ["externalId", "external_id"],
    ["userHash", "user_hash"],
    ["customerEmail", "email"],
    ["customerName", "name"],
  ].forEach(([name, legacyName]) => {
    const value = data[name] !== undefined ? data[name] : legacyCustomer[legacyName];
    if (value !== undefined && value !== null && String(value) !== "") config[name] = String(value);
  });
  const base = config.baseUrl || scriptOrigin;
  let origin;
  try {
    origin = new URL(base).origin;
  } catch (_) {
    console.warn(`netia: ignoring invalid baseUrl=${JSON.stringify(base)}`);
    origin = scriptOrigin;
  }
  config.baseUrl = origin;
  const query = new URLSearchParams(config);
  const color = /^#(?:[0-9a-f]{3}|[0-9a-f]{6})$/i.test(config.primaryColor || "") ? config.primaryColor : "#1890ff";

  const frame = document.createElement("iframe");
  frame.src = `${origin}/chat?${query}`;
  frame.title = config.title || "Chat";
  frame.id = "netia-chat-frame";
  frame.style.cssText =
    "position:fixed;bottom:88px;right:20px;width:min(376px,calc(100vw - 40px));height:min(600px,calc(100vh - 120px));" +
    "border:0;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.2);z-index:2147483000;display:none;background:#fff";

  const button = document.createElement("button");
  button.type = "button";
  button.id = "netia-chat-button";
  button.setAttribute("aria-label", "Open chat");
  button.setAttribute("aria-expanded", "false");
  button.textContent = "💬";
  button.style.cssText =
    `position:fixed;bottom:20px;right:20px;width:56px;height:56px;border-radius:50%;border:0;background:${color};` +
    "color:#fff;font-size:24px;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);z-index:2147483000";
  button.addEventListener("click", () => {
    const open = frame.style.display === "none";
    frame.style.display = open ? "block" : "none";
    button.setAttribute("aria-expanded", String(open));
    button.setAttribute("aria-label", open ? "Close chat" : "Open chat");
    button.textContent = open ? "✕" : "💬";
  });

  const mount = () => {
    document.body.appendChild(frame);
    document.body.appendChild(button);
  };
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
