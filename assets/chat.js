// The chat widget page (/chat), meant for an iframe. Lifecycle: read the URL parameters → fetch the
// widget settings → create (or reuse, across reloads) the customer → resume or open the conversation
// → load its history → connect the socket → join → ready. Messages are always rendered as text.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  // The server's TYPING_REFRESH and TYPING_TTL (src/realtime/mod.rs).
  const TYPING_REFRESH_MS = 2000;
  const TYPING_TTL_MS = 6000;
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const COLOR = /^#(?:[0-9a-f]{3}|[0-9a-f]{6})$/i;

  // Storage that survives reloads, or memory when the browser blocks it (third-party iframes).
  const storage = (() => {
    try {
      const probe = "__netia_probe__";
      window.localStorage.setItem(probe, "1");
      window.localStorage.removeItem(probe);
      return window.localStorage;
    } catch (_) {
      const memory = new Map();
      return {
        getItem: (k) => (memory.has(k) ? memory.get(k) : null),
        setItem: (k, v) => memory.set(k, String(v)),
        removeItem: (k) => memory.delete(k),
      };
    }
  })();

  /** URL parameters, validated; a bad value falls back to its default with a console warning. */
  function readParams() {
    const q = new URLSearchParams(window.location.search);
    const warn = (name, value) => console.warn(`netia: ignoring invalid ${name}=${JSON.stringify(value)}`);
    const text = (name, max) => {
      const v = q.get(name);
      if (v === null) return undefined;
      if (v.length > max) return warn(name, v), undefined;
      return v;
    };
    const bool = (name) => {
      const v = q.get(name);
      if (v === null) return undefined;
      if (v === "true" || v === "1") return true;
      if (v === "false" || v === "0") return false;
      return warn(name, v), undefined;
    };
    const accountId = q.get("accountId") || q.get("token");
    let baseUrl = window.location.origin;
    const base = q.get("baseUrl");
    if (base !== null) {
      try {
        const url = new URL(base);
        if (url.protocol === "http:" || url.protocol === "https:") baseUrl = url.origin;
        else warn("baseUrl", base);
      } catch (_) {
        warn("baseUrl", base);
      }
    }
    let primaryColor = q.get("primaryColor");
    if (primaryColor !== null && !COLOR.test(primaryColor)) {
      warn("primaryColor", primaryColor);
      primaryColor = null;
    }
    let inbox = q.get("inbox");
    if (inbox !== null && !UUID.test(inbox)) {
      warn("inbox", inbox);
      inbox = null;
    }
    return {
      accountId: accountId && UUID.test(accountId) ? accountId : null,
      inbox,
      baseUrl,
      title: text("title", 200),
      subtitle: text("subtitle", 500),
      primaryColor: primaryColor || undefined,
      greeting: text("greeting", 2000),
      newMessagePlaceholder: text("newMessagePlaceholder", 200),
      showAgentAvailability: bool("showAgentAvailability"),
      isBrandingHidden: bool("isBrandingHidden"),
      companyName: text("companyName", 200),
      // The site's signed-in user (identity verification: see widget.js).
      externalId: text("externalId", 200),
      userHash: text("userHash", 200),
      customerEmail: text("customerEmail", 320),
      customerName: text("customerName", 200),
    };
  }

  const params = readParams();
  const state = {
    customer: null, // {id, token}
    conversationId: null,
    rendered: new Map(), // message id or client_message_id → element
    unsent: new Map(), // client_message_id → body
    channel: null,
    typingTimer: null,
    typingSentAt: 0,
    typingSent: false,
    agentsOnline: 0,
    showAvailability: false,
  };

  function setStatus(text) {
    $("status").textContent = text;
  }

  async function api(method, path, token, body) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(params.baseUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error((data && data.message) || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return data.data;
  }

  function applySettings(settings) {
    const pick = (param, setting, fallback) => (param !== undefined ? param : setting !== undefined && setting !== "" ? setting : fallback);
    const title = pick(params.title, settings.title, "Welcome!");
    $("title").textContent = title;
    document.title = title;
    $("subtitle").textContent = pick(params.subtitle, settings.subtitle, "Ask us anything below.");
    const color = pick(params.primaryColor, COLOR.test(settings.primary_color || "") ? settings.primary_color : undefined, "#1890ff");
    document.documentElement.style.setProperty("--primary", color);
    $("message").placeholder = pick(params.newMessagePlaceholder, settings.new_message_placeholder, "Start typing…");
    $("branding").hidden = pick(params.isBrandingHidden, settings.is_branding_hidden, false);
    state.showAvailability = pick(params.showAgentAvailability, settings.show_agent_availability, false);
    state.greeting = pick(params.greeting, settings.greeting, "");
    if (params.companyName) $("branding").dataset.company = params.companyName;
  }

  function kindLabel(message) {
    if (message.type === "bot") return "AI assistant";
    if (fromCustomer(message)) return "";
    return message.author_name || params.companyName || "Agent";
  }

  /** The customer's own messages: typed here, or sent by email or SMS from the customer. */
  function fromCustomer(message) {
    return message.type === "customer" || (message.type !== "agent" && message.customer_id != null);
  }

  /** Shows `message` once: a saved message replaces its pending copy (same client_message_id). */
  function render(message, options) {
    const mine = fromCustomer(message);
    const key = message.id || message.client_message_id;
    let el = state.rendered.get(key) || (message.client_message_id && state.rendered.get(message.client_message_id));
    if (!el) {
      el = document.createElement("li");
      $("messages").appendChild(el);
    }
    el.className = "message" + (mine ? " mine" : "") + (options && options.pending ? " pending" : "") + (options && options.failed ? " failed" : "");
    el.dataset.state = options && options.pending ? "pending" : options && options.failed ? "failed" : "sent";
    el.dataset.type = message.type || "customer";
    el.textContent = message.body; // text, never HTML
    const label = kindLabel(message);
    if (label || (options && options.failed)) {
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = options && options.failed ? "Not sent yet — will retry" : label;
      el.appendChild(meta);
    }
    if (message.id) state.rendered.set(message.id, el);
    if (message.client_message_id) state.rendered.set(message.client_message_id, el);
    $("messages").scrollTop = $("messages").scrollHeight;
    if (!mine && !(options && options.pending)) markSeenSoon();
  }

  function renderGreeting() {
    if (!state.greeting || state.rendered.size > 0) return;
    const el = document.createElement("li");
    el.className = "message greeting";
    el.dataset.type = "greeting";
    el.textContent = state.greeting;
    $("messages").appendChild(el);
  }

  let seenTimer = null;
  function markSeenSoon() {
    clearTimeout(seenTimer);
    seenTimer = setTimeout(() => {
      if (document.visibilityState === "visible" && state.channel && state.channel.state === "joined") {
        state.channel.push("messages:seen", {});
      }
    }, 500);
  }

  function newId() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    return "m-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
  }

  function send(body, clientMessageId) {
    const id = clientMessageId || newId();
    state.unsent.set(id, body);
    render({ client_message_id: id, body, type: "customer" }, { pending: true });
    state.channel
      .push("shout", { body, client_message_id: id })
      .receive("ok", (saved) => {
        state.unsent.delete(id);
        render(saved);
      })
      .receive("error", (e) => {
        render({ client_message_id: id, body, type: "customer" }, { failed: true });
        console.warn("netia: message refused", e);
      })
      .receive("timeout", () => render({ client_message_id: id, body, type: "customer" }, { failed: true }));
  }

  // Typing is ephemeral: while typing, say so again every TYPING_REFRESH_MS; pages forget a
  // typist not heard from for TYPING_TTL_MS (a closed tab never says it stopped).
  function setTyping(typing) {
    if (!state.channel || state.channel.state !== "joined") return;
    const now = Date.now();
    if (state.typingSent === typing && !(typing && now - state.typingSentAt >= TYPING_REFRESH_MS)) return;
    state.typingSent = typing;
    state.typingSentAt = now;
    state.channel.push("typing", { typing });
  }

  function showAvailability() {
    const el = $("availability");
    if (!state.showAvailability) {
      el.hidden = true;
      return;
    }
    el.hidden = false;
    el.textContent = state.agentsOnline > 0 ? "We're online!" : "We're away at the moment.";
  }

  async function loadHistory() {
    const messages = await api("GET", `/api/conversations/${state.conversationId}/messages?limit=200`, state.customer.token);
    messages.forEach((m) => render(m));
    renderGreeting();
  }

  async function customer() {
    // One stored customer per site user: an anonymous visitor, or the external id the site gave.
    const key = `netia:${params.accountId}:customer${params.externalId ? `:${params.externalId}` : ""}`;
    const stored = storage.getItem(key);
    if (stored) {
      try {
        const parsed = JSON.parse(stored);
        if (parsed && parsed.id && parsed.token) return parsed;
      } catch (_) {}
    }
    const body = {
      account_id: params.accountId,
      metadata: { current_url: document.referrer || window.location.href, user_agent: navigator.userAgent },
    };
    if (params.externalId) body.external_id = params.externalId;
    if (params.userHash) body.user_hash = params.userHash;
    if (params.customerEmail) body.email = params.customerEmail;
    if (params.customerName) body.name = params.customerName;
    const created = await api("POST", "/api/customers", null, body);
    const saved = { id: created.id, token: created.token };
    storage.setItem(key, JSON.stringify(saved));
    return saved;
  }

  async function conversation() {
    const mine = await api("GET", "/api/conversations/customer", state.customer.token);
    const open = (mine || []).find((c) => c.status !== "closed") || (mine || [])[0];
    if (open) return open.id;
    const body = { account_id: params.accountId, customer_id: state.customer.id };
    if (params.inbox) body.inbox_id = params.inbox;
    return (await api("POST", "/api/conversations", state.customer.token, body)).id;
  }

  function connect() {
    const socketUrl = params.baseUrl.replace(/^http/, "ws") + "/socket";
    const socket = new window.NetiaPhoenix.Socket(socketUrl, { params: { token: state.customer.token } });
    socket.onClose(() => setStatus("Reconnecting…"));
    const channel = socket.channel(`conversation:${state.conversationId}`, {});
    state.channel = channel;
    let typingShown = null;
    const hideTyping = () => {
      $("typing").hidden = true;
      clearTimeout(typingShown);
    };
    channel.on("shout", (message) => {
      if (message.private) return;
      if (message.type !== "customer") hideTyping(); // the answer arrived
      render(message);
    });
    channel.on("typing", (t) => {
      if (t.customer_id) return; // ourselves in another tab
      const el = $("typing");
      el.hidden = !t.typing;
      el.textContent = t.bot ? "AI is typing…" : `${params.companyName || "Agent"} is typing…`;
      clearTimeout(typingShown);
      // Typists repeat themselves every TYPING_REFRESH_MS; one not heard from is gone.
      if (t.typing) typingShown = setTimeout(hideTyping, TYPING_TTL_MS);
    });
    let first = true;
    channel.onJoin(async () => {
      setStatus("");
      $("message").disabled = false;
      $("send").disabled = false;
      document.body.dataset.ready = "true";
      if (!first) {
        // Back after a disconnection: what was said meanwhile, then what we could not send.
        await loadHistory().catch(() => {});
        state.unsent.forEach((body, id) => send(body, id));
      }
      first = false;
      markSeenSoon();
    });
    const room = socket.channel(`room:${params.accountId}`, {});
    // Customers learn whether agents are online and how many, never who.
    room.on("availability", (a) => {
      state.agentsOnline = Number(a.agents) || 0;
      showAvailability();
    });
    socket.connect();
    channel.join();
    room.join();
  }

  async function start() {
    if (!params.accountId) {
      setStatus("This chat is not set up: the accountId parameter is missing or invalid.");
      console.warn("netia: accountId (or token) must be the account's id");
      return;
    }
    try {
      const settings = await api("GET", `/api/widget_settings?account_id=${encodeURIComponent(params.accountId)}`);
      applySettings(settings);
      showAvailability();
      state.customer = await customer().catch(async (e) => {
        // A stored customer that no longer exists: start again.
        storage.removeItem(`netia:${params.accountId}:customer`);
        throw e;
      });
      try {
        state.conversationId = await conversation();
      } catch (e) {
        if (e.status !== 401) throw e;
        storage.removeItem(`netia:${params.accountId}:customer`);
        state.customer = await customer();
        state.conversationId = await conversation();
      }
      document.body.dataset.conversation = state.conversationId;
      await loadHistory();
      connect();
    } catch (e) {
      setStatus("The chat is unavailable right now. Please try again later.");
      console.warn("netia: chat failed to start", e);
    }
  }

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("message");
    const body = input.value.trim();
    if (!body || !state.channel) return;
    input.value = "";
    setTyping(false);
    send(body);
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("message").addEventListener("input", () => {
    setTyping($("message").value.length > 0);
    clearTimeout(state.typingTimer);
    state.typingTimer = setTimeout(() => setTyping(false), 3000);
  });
  document.addEventListener("visibilitychange", markSeenSoon);
  start();
})();
