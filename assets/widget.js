// Netia's embed script: a chat button and the /chat iframe, on any site.
//
//   <script src="https://netia.example.com/widget.js" data-account-id="…" data-title="Support"
//           data-primary-color="#2563eb" async></script>
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
    "newMessagePlaceholder", "showAgentAvailability", "isBrandingHidden", "companyName", "baseUrl", "locale",
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
  const color = /^#(?:[0-9a-f]{3}|[0-9a-f]{6})$/i.test(config.primaryColor || "") ? config.primaryColor : "#2563eb";

  // The launcher's words, in the page's language where the widget speaks it.
  const WORDS = {
    en: { open: "Open chat", close: "Close chat", unread: (n) => `${n} unread ${n === 1 ? "message" : "messages"}` },
    fr: { open: "Ouvrir le chat", close: "Fermer le chat", unread: (n) => `${n} ${n === 1 ? "message non lu" : "messages non lus"}` },
    de: { open: "Chat öffnen", close: "Chat schließen", unread: (n) => `${n} ungelesene ${n === 1 ? "Nachricht" : "Nachrichten"}` },
    es: { open: "Abrir el chat", close: "Cerrar el chat", unread: (n) => `${n} ${n === 1 ? "mensaje sin leer" : "mensajes sin leer"}` },
  };
  const lang = [config.locale, ...(navigator.languages || []), navigator.language, document.documentElement.lang]
    .map((l) => String(l || "").toLowerCase().split(/[-_]/)[0])
    .find((l) => WORDS[l]);
  const words = WORDS[lang] || WORDS.en;

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
  button.setAttribute("aria-expanded", "false");
  button.style.cssText =
    `position:fixed;bottom:20px;right:20px;width:56px;height:56px;border-radius:50%;border:0;background:${color};` +
    "color:#fff;font-size:24px;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);z-index:2147483000";
  const icon = document.createElement("span");
  icon.setAttribute("aria-hidden", "true");
  // The unread badge: answers that arrived while the chat was closed (the iframe counts them).
  const badge = document.createElement("span");
  badge.id = "netia-chat-badge";
  badge.setAttribute("aria-hidden", "true");
  badge.style.cssText =
    "position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 6px;border-radius:10px;" +
    "background:#dc2626;color:#fff;font:600 12px/20px system-ui,sans-serif;text-align:center;box-sizing:border-box";
  button.append(icon, badge);
  let open = false;
  let unread = 0;
  const show = () => {
    icon.textContent = open ? "✕" : "💬";
    badge.textContent = unread > 99 ? "99+" : String(unread);
    badge.hidden = open || unread === 0;
    button.setAttribute("aria-expanded", String(open));
    button.setAttribute("aria-label", open ? words.close : unread > 0 ? `${words.open} (${words.unread(unread)})` : words.open);
  };
  show();
  button.addEventListener("click", () => {
    open = !open;
    frame.style.display = open ? "block" : "none";
    if (open) unread = 0;
    if (frame.contentWindow) frame.contentWindow.postMessage({ type: "netia:open", open }, origin);
    show();
  });
  // The chat page may load after the launcher was clicked: tell it again once it has.
  frame.addEventListener("load", () => frame.contentWindow.postMessage({ type: "netia:open", open }, origin));
  window.addEventListener("message", (event) => {
    if (event.source !== frame.contentWindow || event.origin !== origin) return;
    const d = event.data || {};
    if (d.type === "netia:unread" && Number.isInteger(d.count) && d.count >= 0) {
      unread = open ? 0 : d.count;
      show();
    }
  });

  const mount = () => {
    document.body.appendChild(frame);
    document.body.appendChild(button);
  };
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
