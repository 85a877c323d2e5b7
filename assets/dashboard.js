// The agent dashboard (/): sign-in, the live inbox with its filters and counts, a conversation with its
// history, replies and notes, actions, the customer, presence and typing, the event history (the
// auditor's view), and settings. Everything comes from Netia's REST API and its socket; every text
// from customers or agents is rendered as text, never as HTML.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  // The server's TYPING_REFRESH and TYPING_TTL (src/realtime/mod.rs).
  const TYPING_REFRESH_MS = 2000;
  const TYPING_TTL_MS = 6000;
  const TOKEN = "netia:session";
  const FILTERS = {
    open: { status: "open" },
    assigned_to_me: { status: "open", assignee: "me" },
    unassigned: { status: "open", assignee: "unassigned" },
    priority: { status: "open", priority: "priority" },
    snoozed: { status: "snoozed" },
    closed: { status: "closed" },
  };
  const state = {
    session: null, // {token, user_id, account_id}
    filter: "open",
    conversation: null, // the open conversation view
    customer: null, // its customer's profile
    users: [],
    socket: null,
    channel: null,
    refreshTimer: null,
    typingSent: false,
    typingTimer: null,
    typingSentAt: 0,
    names: new Map(), // conversation id → its customer's name, from the list
  };

  const el = (tag, text, className) => {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text; // text, never HTML
    if (className) node.className = className;
    return node;
  };

  async function api(method, path, body) {
    const answer = await request(method, path, body);
    return answer && answer.data;
  }

  /** The whole JSON answer (`{data, next}` for a page); null for 204; throws on an error. */
  async function request(method, path, body) {
    const headers = { Accept: "application/json" };
    if (state.session) headers.Authorization = `Bearer ${state.session.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (response.status === 401 && state.session) {
      signOut();
      throw new Error("signed out");
    }
    if (response.status === 204) return null;
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((data && data.message) || `HTTP ${response.status}`);
    return data;
  }

  // ----- sign-in -----

  function showLogin() {
    $("app").hidden = true;
    $("login").hidden = false;
    document.body.dataset.view = "login";
    $("login-email").focus();
  }

  function signOut() {
    localStorage.removeItem(TOKEN);
    state.session = null;
    if (state.socket) state.socket.disconnect();
    showLogin();
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    try {
      const session = await api("POST", "/api/session", {
        email: $("login-email").value,
        password: $("login-password").value,
      });
      state.session = { token: session.token, user_id: session.user_id, account_id: session.account_id };
      localStorage.setItem(TOKEN, JSON.stringify(state.session));
      start();
    } catch (e) {
      $("login-error").textContent = e.message;
    }
  });
  $("logout").addEventListener("click", async () => {
    await api("DELETE", "/api/session").catch(() => {});
    signOut();
  });

  // ----- inbox -----

  function who(c) {
    return (c.customer && (c.customer.name || c.customer.email)) || "Anonymous customer";
  }

  async function refreshCounts() {
    const counts = await api("GET", "/api/conversations/count");
    Object.keys(FILTERS).forEach((name) => {
      const span = document.querySelector(`[data-count=${name}]`);
      if (span) span.textContent = String(counts[name] ?? "");
    });
  }

  // ----- the inbox list -----

  const PAGE = 50;
  const SOURCES = { chat: "Chat", email: "Email", gmail: "Gmail", slack: "Slack", sms: "SMS", api: "API" };

  /** "AB" from a name, "A" from an email address, "?" for nobody. */
  function initials(text) {
    const words = String(text || "").replace(/@.*/, "").split(/[\s._-]+/).filter((w) => /^\p{L}/u.test(w));
    if (words.length === 0) return "?";
    return (words[0][0] + (words.length > 1 ? words[words.length - 1][0] : "")).toUpperCase();
  }

  // Dark enough for white initials to pass WCAG AA (4.5:1) on each.
  const AVATAR_COLOURS = ["#1d4ed8", "#047857", "#b45309", "#7c3aed", "#be123c", "#0e7490", "#4d7c0f", "#a21caf"];
  function avatar(text, key, className = "avatar") {
    const node = el("span", initials(text), className);
    let hash = 0;
    for (const ch of String(key || text || "")) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
    node.style.background = AVATAR_COLOURS[hash % AVATAR_COLOURS.length];
    node.setAttribute("aria-hidden", "true");
    return node;
  }

  /** "now", "5 min", "3 h", "2 d", then the date: how long ago `iso` was. */
  function ago(iso) {
    const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
    if (!(seconds >= 0)) return "";
    if (seconds < 60) return "now";
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h`;
    if (seconds < 7 * 86400) return `${Math.floor(seconds / 86400)} d`;
    return new Date(iso).toLocaleDateString();
  }

  function listItem(c) {
    state.names.set(c.id, who(c));
    const item = el("li");
    const button = el("button", undefined, "conversation-item");
    button.type = "button";
    button.dataset.id = c.id;
    button.setAttribute("aria-current", String(state.conversation && state.conversation.id === c.id));
    button.appendChild(avatar(who(c), c.customer_id));
    const main = el("span", undefined, "item-main");
    const top = el("span", undefined, "item-top");
    top.appendChild(el("span", who(c), "who"));
    const time = el("time", ago(c.last_activity_at), "when");
    time.dateTime = c.last_activity_at;
    time.title = new Date(c.last_activity_at).toLocaleString();
    top.appendChild(time);
    main.appendChild(top);
    main.appendChild(el("span", (c.last_message && c.last_message.preview) || "(no messages yet)", "preview"));
    const marks = el("span", undefined, "item-marks");
    marks.appendChild(el("span", SOURCES[c.source] || c.source, `badge source ${c.source}`));
    if (c.priority === "priority") marks.appendChild(el("span", "Priority", "badge priority"));
    if (c.status !== "open") marks.appendChild(el("span", c.status === "snoozed" ? "Snoozed" : "Closed", "badge"));
    if (c.assignee_id) {
      const assignee = avatar(userName(c.assignee_id), c.assignee_id, "avatar small");
      assignee.removeAttribute("aria-hidden");
      assignee.setAttribute("role", "img");
      assignee.setAttribute("aria-label", `Assigned to ${userName(c.assignee_id)}`);
      assignee.title = `Assigned to ${userName(c.assignee_id)}`;
      marks.appendChild(assignee);
    }
    main.appendChild(marks);
    button.appendChild(main);
    button.addEventListener("click", () => openConversation(c.id));
    item.appendChild(button);
    return item;
  }

  function listQuery(limit, after) {
    const query = new URLSearchParams(Object.assign({ limit: String(limit) }, FILTERS[state.filter]));
    const q = $("search").value.trim();
    if (q) query.set("q", q);
    if (after) query.set("after", after);
    return query;
  }

  const fetchPage = (query) => request("GET", `/api/conversations?${query}`);


  // The first page again, as long as what is shown (a live update keeps the pages scrolled in).
  async function refreshList(fresh = false) {
    const shown = fresh ? 0 : document.querySelectorAll("#conversations > li").length;
    const limit = Math.min(Math.max(PAGE, shown), 200);
    const asked = listQuery(limit).toString();
    state.listQuery = asked;
    const page = await fetchPage(asked);
    if (state.listQuery !== asked) return; // a newer search or filter won
    $("conversations").replaceChildren(...page.data.map(listItem));
    state.next = page.next || null;
    const q = $("search").value.trim();
    $("empty").textContent = q ? `No conversations match “${q}”.` : "No conversations here.";
    $("empty").hidden = page.data.length > 0;
  }

  // The next page when the list is scrolled near its end.
  async function loadMore() {
    if (!state.next || state.loadingMore) return;
    state.loadingMore = true;
    const asked = state.listQuery;
    try {
      const page = await fetchPage(listQuery(PAGE, state.next));
      if (state.listQuery !== asked) return;
      const known = new Set([...document.querySelectorAll("#conversations button")].map((b) => b.dataset.id));
      page.data.filter((c) => !known.has(c.id)).forEach((c) => $("conversations").appendChild(listItem(c)));
      state.next = page.next || null;
    } finally {
      state.loadingMore = false;
    }
  }

  $("inbox").addEventListener("scroll", () => {
    const list = $("inbox");
    if (list.scrollTop + list.clientHeight >= list.scrollHeight - 200) loadMore().catch(() => {});
  });
  let searchTimer = null;
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => refreshList(true).catch(() => {}), 250);
  });
  // Relative times move on.
  setInterval(() => {
    document.querySelectorAll("#conversations time.when").forEach((t) => (t.textContent = ago(t.dateTime)));
  }, 60000);

  function refreshSoon() {
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(() => {
      refreshCounts().catch(() => {});
      refreshList().catch(() => {});
      if (state.conversation) reloadConversation().catch(() => {});
    }, 150);
  }

  $("filters").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-filter]");
    if (!button) return;
    state.filter = button.dataset.filter;
    document.querySelectorAll("#filters button").forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
    $("inbox").scrollTop = 0;
    refreshList(true).catch(() => {});
  });

  // ----- a conversation -----

  function userName(id) {
    const user = state.users.find((u) => u.id === id);
    return user ? user.display_name || user.email : "Agent";
  }

  /** Who wrote `m`, and through which channel when it was not the chat. */
  function authorLabel(m, kind) {
    if (kind === "note") return `Note by ${userName(m.user_id)}`;
    if (kind === "bot") return "AI assistant";
    const via = m.source && m.source !== "chat" ? ` via ${m.source}` : "";
    if (m.user_id) return userName(m.user_id) + via;
    if (m.author_name) return `${m.author_name} (not a Netia user)${via}`;
    return "Customer" + via;
  }

  /** The line under a message: who, when, and for replies sent by SMS what Twilio says of them. */
  function metaText(m, kind, continued) {
    const status = !m.customer_id && m.delivery_status && m.delivery_status !== "sent" ? ` · ${m.delivery_status}` : "";
    const time = new Date(m.sent_at).toLocaleTimeString();
    // In a group, the author is named once, on its first message.
    return continued ? `${time}${status}` : `${authorLabel(m, kind)} · ${time}${status}`;
  }

  /** Downloads the email as it was received (`message.eml`): the full original, quotes and all. */
  function originalButton(m) {
    const button = el("button", "Original email", "link");
    button.type = "button";
    button.addEventListener("click", async () => {
      const path = `/api/conversations/${m.conversation_id}/messages/${m.id}/original`;
      const response = await fetch(path, { headers: { Authorization: `Bearer ${state.session.token}` } });
      if (!response.ok) return alert(`The original is not available (HTTP ${response.status}).`);
      const link = document.createElement("a");
      link.href = URL.createObjectURL(await response.blob());
      link.download = "message.eml";
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    });
    return button;
  }

  const fileOptions = { baseUrl: "", token: () => (state.session ? state.session.token : ""), labels: { download: "Download" } };
  // Messages of one author within this long of each other form a group (one name line).
  const GROUP_MS = 5 * 60 * 1000;

  function renderMessage(m) {
    if (document.querySelector(`#messages [data-id="${m.id}"]`)) return;
    const kind = m.private ? "note" : m.type;
    // The team's side (agents, external agents, the bot) on the right; the customer's on the left.
    const item = el("li", m.body, `message ${kind}${m.customer_id ? "" : " team"}`);
    item.dataset.id = m.id;
    item.dataset.type = kind;
    item.dataset.author = `${kind}:${m.user_id || m.customer_id || m.author_name || ""}`;
    item.dataset.at = m.sent_at;
    item.title = new Date(m.sent_at).toLocaleString();
    const previous = $("messages").lastElementChild;
    if (previous && previous.dataset.author === item.dataset.author && Date.parse(m.sent_at) - Date.parse(previous.dataset.at) < GROUP_MS) {
      item.classList.add("continued");
    }
    window.NetiaFiles.render(item, m.attachments, fileOptions);
    if (!m.body && m.attachments && m.attachments.length) item.classList.add("file-only");
    item.appendChild(el("span", metaText(m, kind, item.classList.contains("continued")), "meta"));
    if (kind === "email" && m.customer_id) item.appendChild(originalButton(m));
    $("messages").appendChild(item);
    $("messages").scrollTop = $("messages").scrollHeight;
  }

  function renderHeader(c) {
    $("conv-title").textContent = who(c);
    $("conv-meta").textContent = `${c.status}${c.snoozed_until ? ` until ${new Date(c.snoozed_until).toLocaleString()}` : ""} · ${c.priority} · ${c.source}`;
    $("toggle-status").textContent = c.status === "open" ? "Close" : "Reopen";
    $("toggle-priority").textContent = c.priority === "priority" ? "Normal priority" : "Mark priority";
    const select = $("assignee");
    select.replaceChildren(el("option", "Unassigned"));
    select.firstChild.value = "";
    state.users.forEach((u) => {
      const option = el("option", u.display_name || u.email);
      option.value = u.id;
      select.appendChild(option);
    });
    select.value = c.assignee_id || "";
    const tags = $("tags");
    tags.replaceChildren();
    c.tags.forEach((tag) => {
      const item = el("li", tag);
      const remove = el("button", "×");
      remove.type = "button";
      remove.setAttribute("aria-label", `Remove tag ${tag}`);
      remove.addEventListener("click", () => update({ tags: state.conversation.tags.filter((t) => t !== tag) }));
      item.appendChild(remove);
      tags.appendChild(item);
    });
  }

  /** Says how a reply will reach the customer: by SMS, in the widget (and by email when unseen), or not at all (a note). */
  function showDeliveryHint() {
    const c = state.conversation;
    const customer = state.customer;
    if (!c || !customer) return;
    $("delivery-hint").textContent = $("private").checked
      ? "Private note: only agents see it."
      : c.source === "sms" && customer.phone
        ? `Your reply goes by SMS to ${customer.phone}.`
        : c.source === "email" && customer.email
          ? `Your reply goes by email to ${customer.email}.`
        : c.source === "gmail" && customer.email
          ? `Your reply goes through Gmail to ${customer.email}, in the customer's thread.`
        : customer.email
          ? `Your reply appears in the chat; if unseen, it is emailed to ${customer.email}.`
          : "Your reply appears in the customer's chat.";
  }

  // ----- the customer panel's fields -----

  function verifiedBadge() {
    const badge = el("span", "Verified", "badge verified");
    badge.title = "The customer's identity was signed by the account's own site (identity verification).";
    return badge;
  }

  // "Chrome 131 on Linux" from a User-Agent header, for reading at a glance (the whole header is
  // the field's tooltip). Only the common browsers and systems; anything else shows as it is.
  function describeUserAgent(ua) {
    const browsers = [
      [/Edg(?:e|A|iOS)?\/(\d+)/, "Edge"],
      [/OPR\/(\d+)/, "Opera"],
      [/SamsungBrowser\/(\d+)/, "Samsung Internet"],
      [/(?:Firefox|FxiOS)\/(\d+)/, "Firefox"],
      [/(?:Chrome|CriOS)\/(\d+)/, "Chrome"],
      [/Version\/(\d+)[^ ]* (?:Mobile\/\S+ )?Safari\//, "Safari"],
    ];
    const systems = [
      [/iPhone|iPad|iPod/, "iOS"],
      [/Android/, "Android"],
      [/CrOS/, "ChromeOS"],
      [/Windows/, "Windows"],
      [/Mac OS X|Macintosh/, "macOS"],
      [/Linux/, "Linux"],
    ];
    const browser = browsers.map(([re, name]) => [re.exec(ua), name]).find(([m]) => m);
    const system = systems.find(([re]) => re.test(ua));
    if (!browser && !system) return ua;
    const named = browser ? `${browser[1]} ${browser[0][1]}` : "A browser";
    return system ? `${named} on ${system[1]}` : named;
  }

  // A link that opens elsewhere, for http(s) addresses only; anything else stays text.
  function pageLink(url) {
    let parsed;
    try {
      parsed = new URL(url);
    } catch (_) {
      return url;
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return url;
    const link = el("a", `${parsed.host}${parsed.pathname === "/" ? "" : parsed.pathname}`);
    link.href = parsed.href;
    link.title = parsed.href;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    return link;
  }

  // The customer's local time now, from an IANA time zone; nothing for an unknown zone.
  function localTime(zone) {
    try {
      const time = new Intl.DateTimeFormat(undefined, { timeZone: zone, hour: "2-digit", minute: "2-digit" }).format(new Date());
      return `${time} (${zone})`;
    } catch (_) {
      return "";
    }
  }

  // A metadata field as [label, value] rows: the widget's own keys read as words, others with their
  // key made readable ("plan_tier" → "Plan tier").
  function describeField(key, value) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    switch (key) {
      case "user_agent":
        return [["Browser", withTitle(describeUserAgent(text), text)]];
      case "current_url":
        return [["Page", pageLink(text)]];
      case "time_zone":
        return [["Local time", localTime(text)]];
      case "locale":
        return [["Language", text]];
      default: {
        const label = key.replace(/[_-]+/g, " ").trim();
        return [[label.charAt(0).toUpperCase() + label.slice(1), text]];
      }
    }
  }

  function withTitle(text, title) {
    const span = el("span", text);
    span.title = title;
    return span;
  }

  async function renderCustomer(c) {
    const panel = $("customer");
    panel.replaceChildren(el("h3", "Customer"));
    state.customer = null;
    $("delivery-hint").textContent = "";
    const customer = await api("GET", `/api/customers/${c.customer_id}`).catch(() => null);
    if (!customer) return;
    state.customer = customer;
    showDeliveryHint();
    const rows = [
      ["Name", customer.name],
      ["Email", customer.email],
      ["Phone", customer.phone],
      ["Identity", customer.verified ? verifiedBadge() : customer.external_id ? "Not verified" : ""],
      ["Last seen", customer.last_seen_at && new Date(customer.last_seen_at).toLocaleString()],
      ["Conversations", String(customer.conversation_count)],
    ];
    Object.entries(customer.metadata || {}).forEach(([k, v]) => rows.push(...describeField(k, v)));
    const list = el("dl", undefined, "fields");
    rows.filter(([, v]) => v).forEach(([k, v]) => {
      list.appendChild(el("dt", k));
      const value = el("dd");
      if (typeof v === "string") {
        value.textContent = v;
        value.title = v; // the whole value, when the panel cuts it short
      } else value.appendChild(v);
      list.appendChild(value);
    });
    panel.appendChild(list);
    panel.appendChild(el("p", "", "muted")).id = "customer-online";
  }

  async function reloadConversation() {
    const id = state.conversation.id;
    const c = await api("GET", `/api/conversations/${id}`);
    if (!state.conversation || state.conversation.id !== id) return;
    state.conversation = c;
    renderHeader(c);
  }

  async function openConversation(id) {
    $("settings").hidden = true;
    $("reports").hidden = true;
    $("conversation").hidden = false;
    $("history").hidden = true;
    $("messages").replaceChildren();
    document.body.dataset.view = "conversation";
    const c = await api("GET", `/api/conversations/${id}`);
    state.conversation = c;
    document.body.dataset.conversation = id;
    renderHeader(c);
    document.querySelectorAll("#conversations button").forEach((b) => b.setAttribute("aria-current", String(b.dataset.id === id)));
    const messages = await api("GET", `/api/conversations/${id}/messages?limit=500`);
    messages.forEach(renderMessage);
    renderCustomer(c).catch(() => {});
    api("POST", `/api/conversations/${id}/read`).catch(() => {});
    joinConversation(id);
  }

  function joinConversation(id) {
    if (state.channel) state.channel.leave();
    const channel = state.socket.channel(`conversation:${id}`, {});
    state.channel = channel;
    const presences = new Map();
    const showPresence = () => {
      const keys = [...presences.keys()];
      const customerOnline = keys.some((k) => k.startsWith("customer:"));
      const viewers = keys.filter((k) => k.startsWith("user:") && k !== `user:${state.session.user_id}`);
      $("viewers").textContent =
        (customerOnline ? "Customer online" : "Customer offline") +
        (viewers.length ? ` · also viewing: ${viewers.map((k) => userName(k.slice(5))).join(", ")}` : "");
      const online = $("customer-online");
      if (online) online.textContent = customerOnline ? "Online now" : "";
    };
    channel.on("presence_state", (s) => {
      presences.clear();
      Object.keys(s).forEach((k) => presences.set(k, s[k].metas.length));
      showPresence();
    });
    channel.on("presence_diff", (d) => {
      Object.keys(d.joins || {}).forEach((k) => presences.set(k, (presences.get(k) || 0) + d.joins[k].metas.length));
      Object.keys(d.leaves || {}).forEach((k) => {
        const n = (presences.get(k) || 0) - d.leaves[k].metas.length;
        if (n > 0) presences.set(k, n);
        else presences.delete(k);
      });
      showPresence();
    });
    channel.on("shout", (m) => {
      if (m.conversation_id !== id) return;
      if (m.type === "customer") $("typing").hidden = true;
      renderMessage(m);
    });
    channel.on("typing", (t) => {
      if (t.user_id === state.session.user_id) return;
      $("typing").hidden = !t.typing;
      $("typing").textContent = t.bot ? "AI is typing…" : t.customer_id ? "Customer is typing…" : `${userName(t.user_id)} is typing…`;
      // Typists repeat themselves every TYPING_REFRESH_MS; one not heard from is gone.
      clearTimeout(state.typingShown);
      if (t.typing) state.typingShown = setTimeout(() => ($("typing").hidden = true), TYPING_TTL_MS);
    });
    channel.on("conversation:updated", () => refreshSoon());
    channel.on("message:status", (u) => {
      const item = document.querySelector(`#messages [data-id="${u.id}"]`);
      if (!item) return;
      item.dataset.deliveryStatus = u.delivery_status;
      const meta = item.querySelector(".meta");
      if (meta) meta.textContent = meta.textContent.replace(/( · (queued|accepted|sending|delivered|undelivered|failed))?$/, ` · ${u.delivery_status}`);
    });
    channel.join();
  }

  async function update(changes) {
    try {
      await api("PATCH", `/api/conversations/${state.conversation.id}`, changes);
      refreshSoon();
    } catch (e) {
      alert(e.message);
    }
  }

  $("toggle-status").addEventListener("click", () => update({ status: state.conversation.status === "open" ? "closed" : "open" }));
  $("snooze").addEventListener("click", () =>
    update({ status: "snoozed", snooze_until: new Date(Date.now() + 3600 * 1000).toISOString() }),
  );
  $("toggle-priority").addEventListener("click", () =>
    update({ priority: state.conversation.priority === "priority" ? "normal" : "priority" }),
  );
  $("assignee").addEventListener("change", (e) => update({ assignee_id: e.target.value || null }));
  $("tag-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const tag = $("tag-input").value.trim();
    if (!tag) return;
    $("tag-input").value = "";
    update({ tags: [...new Set([...state.conversation.tags, tag])] });
  });
  $("show-history").addEventListener("click", async () => {
    const list = $("history");
    if (!list.hidden) {
      list.hidden = true;
      return;
    }
    const entries = await api("GET", `/api/conversations/${state.conversation.id}/history`);
    list.replaceChildren();
    entries.forEach((h) => list.appendChild(el("li", `${new Date(h.at).toLocaleString()} — ${h.summary} (${h.event_type})`)));
    list.hidden = false;
  });

  // Typing is ephemeral: while typing, say so again every TYPING_REFRESH_MS; pages forget a
  // typist not heard from for TYPING_TTL_MS (a closed tab never says it stopped).
  function setTyping(typing) {
    if (!state.channel) return;
    const now = Date.now();
    if (state.typingSent === typing && !(typing && now - state.typingSentAt >= TYPING_REFRESH_MS)) return;
    state.typingSent = typing;
    state.typingSentAt = now;
    state.channel.push("typing", { typing });
  }

  $("reply").addEventListener("input", () => {
    setTyping($("reply").value.length > 0);
    clearTimeout(state.typingTimer);
    state.typingTimer = setTimeout(() => setTyping(false), 3000);
  });
  $("reply").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      $("reply-form").requestSubmit();
    }
  });
  $("reply-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = $("reply").value.trim();
    if (!body || !state.conversation) return;
    const clientMessageId = window.crypto && window.crypto.randomUUID ? window.crypto.randomUUID() : String(Date.now());
    try {
      const saved = await api("POST", `/api/conversations/${state.conversation.id}/messages`, {
        body,
        private: $("private").checked,
        client_message_id: clientMessageId,
      });
      $("reply").value = "";
      setTyping(false);
      renderMessage(saved);
    } catch (err) {
      alert(err.message);
    }
  });
  $("attach").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", async () => {
    const files = Array.from($("file-input").files || []);
    $("file-input").value = "";
    if (!state.conversation) return;
    for (const file of files) {
      try {
        const text = $("reply").value.trim();
        const isPrivate = $("private").checked;
        // A caption travels in the URL (at most 2,000 characters); a longer text goes first as its own message.
        if (text.length > 2000) {
          renderMessage(await api("POST", `/api/conversations/${state.conversation.id}/messages`, { body: text, private: isPrivate }));
        }
        const caption = text.length > 2000 ? "" : text;
        const saved = await window.NetiaFiles.upload(fileOptions, state.conversation.id, file, { body: caption, private: isPrivate });
        $("reply").value = "";
        renderMessage(saved);
      } catch (err) {
        alert(`Could not send ${file.name}: ${err.message}`);
      }
    }
  });
  $("canned").addEventListener("change", (e) => {
    if (e.target.value) $("reply").value = e.target.value;
    e.target.value = "";
    $("reply").focus();
  });

  // On a narrow screen the conversation takes the inbox's place; this goes back to the list.
  $("back-to-inbox").addEventListener("click", () => {
    document.body.dataset.view = "inbox";
    const current = document.querySelector(`#conversations button[data-id="${state.conversation && state.conversation.id}"]`);
    if (current) current.focus();
  });

  // ----- keyboard shortcuts (the help dialog lists them) -----

  function stepConversation(by) {
    const buttons = [...document.querySelectorAll("#conversations button")];
    if (buttons.length === 0) return;
    const current = buttons.findIndex((b) => b.getAttribute("aria-current") === "true");
    const next = current < 0 ? (by > 0 ? 0 : buttons.length - 1) : Math.min(Math.max(current + by, 0), buttons.length - 1);
    buttons[next].focus();
    if (next !== current) buttons[next].click();
  }

  const inConversation = () => state.conversation && !$("conversation").hidden;
  const SHORTCUTS = {
    j: () => stepConversation(1),
    k: () => stepConversation(-1),
    r: () => inConversation() && $("reply").focus(),
    e: () => inConversation() && state.conversation.status === "open" && $("toggle-status").click(),
    "/": () => inConversation() && $("canned").focus(),
    "?": () => $("shortcuts").showModal(),
  };

  document.addEventListener("keydown", (e) => {
    if ($("app").hidden || e.ctrlKey || e.metaKey || e.altKey) return;
    const target = e.target;
    const typing = target.closest && target.closest("input, textarea, select, [contenteditable]");
    if (typing) {
      if (e.key === "Escape" && target.id === "reply") target.blur();
      return;
    }
    if ($("shortcuts").open) return;
    const action = SHORTCUTS[e.key];
    if (!action) return;
    e.preventDefault();
    action();
  });
  $("show-shortcuts").addEventListener("click", () => $("shortcuts").showModal());

  // ----- reports -----

  const SVG = "http://www.w3.org/2000/svg";
  const percent = (rate) => (rate === null || rate === undefined ? "–" : `${Math.round(rate * 100)}%`);
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 90) return `${Math.round(seconds)} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  // [label, value, note] → <div class=tile><dt>label</dt><dd>value</dd><dd>note</dd></div>
  function tiles(list, entries) {
    list.replaceChildren();
    entries.forEach(([label, value, note]) => {
      const tile = el("div", null, "tile");
      tile.appendChild(el("dt", label));
      tile.appendChild(el("dd", value));
      if (note) tile.appendChild(el("dd", note, "muted"));
      list.appendChild(tile);
    });
  }

  // Stacked bars per day: resolved by the AI, handed to a person, the rest of the AI's conversations.
  function aiChart(days) {
    const svg = $("ai-chart");
    const width = 600;
    const height = 150;
    svg.setAttribute("viewBox", `0 0 ${width} ${height + 18}`);
    svg.replaceChildren();
    const max = Math.max(1, ...days.map((d) => d.bot_involved));
    const step = width / Math.max(days.length, 1);
    const bar = Math.max(2, Math.min(40, step * 0.7));
    const every = Math.ceil(days.length / 8);
    days.forEach((d, i) => {
      const x = i * step + (step - bar) / 2;
      let top = height;
      [
        ["resolved", d.resolved_without_human, "resolved by the AI"],
        ["handed", d.handed_off, "handed to a person"],
        ["other", d.bot_involved - d.resolved_without_human - d.handed_off, "other"],
      ].forEach(([kind, n, label]) => {
        if (n <= 0) return;
        const h = (n / max) * (height - 8);
        top -= h;
        const rect = document.createElementNS(SVG, "rect");
        Object.entries({ x, y: top, width: bar, height: h, class: `bar ${kind}`, "data-day": d.day }).forEach(([k, v]) =>
          rect.setAttribute(k, String(v)),
        );
        const title = document.createElementNS(SVG, "title");
        title.textContent = `${d.day}: ${n} ${label}`;
        rect.appendChild(title);
        svg.appendChild(rect);
      });
      if (i % every === 0) {
        const text = document.createElementNS(SVG, "text");
        Object.entries({ x: x + bar / 2, y: height + 14, "text-anchor": "middle" }).forEach(([k, v]) =>
          text.setAttribute(k, String(v)),
        );
        text.textContent = d.day.slice(5);
        svg.appendChild(text);
      }
    });
    const total = days.reduce((n, d) => n + d.bot_involved, 0);
    $("ai-chart-caption").textContent = days.length
      ? `AI conversations per day, ${days[0].day} to ${days[days.length - 1].day}: ${total} in all.`
      : "No AI conversations in this range.";
  }

  function showAi(report) {
    const r = report.rates;
    tiles($("ai-tiles"), [
      ["Conversations", String(report.conversations), `${report.bot_involved} with the AI`],
      ["Resolved by the AI", percent(r.resolved_without_human), `${report.resolved_without_human} of ${report.bot_involved}, no person needed`],
      ["Handed to a person", percent(r.handed_off), `${report.handed_off} of ${report.bot_involved}`],
      ["Reopened within 7 days", percent(r.reopened_within_7_days), `${report.reopened_within_7_days} of ${report.closed} closed`],
      ["First human reply after hand-off", duration(report.handoff_to_human_reply.median_seconds),
        `median of ${report.handoff_to_human_reply.count}; average ${duration(report.handoff_to_human_reply.average_seconds)}`],
      ["AI answers", String(report.bot_answers), `${report.fallbacks} fallback message${report.fallbacks === 1 ? "" : "s"}`],
    ]);
    const names = { agent_replied: "an agent replied", customer_asked: "the customer asked", model_handoff: "the AI chose to", model_failed: "the AI failed" };
    const reasons = Object.entries(report.handoff_reasons).map(([k, n]) => `${names[k] || k}: ${n}`);
    $("ai-reasons").textContent = `Why it was handed off — ${reasons.join(", ")}.`;
    aiChart(report.days);
    const body = $("ai-days").querySelector("tbody");
    body.replaceChildren();
    report.days.forEach((d) => {
      const row = el("tr");
      [d.day, d.conversations, d.bot_involved, d.resolved_without_human, d.handed_off].forEach((v) => row.appendChild(el("td", String(v))));
      body.appendChild(row);
    });
  }

  function showConversations(days) {
    const sum = (f) => days.reduce((n, d) => n + f(d), 0);
    const answered = sum((d) => d.first_response.count);
    const waited = sum((d) => (d.first_response.average_seconds || 0) * d.first_response.count);
    const resolved = sum((d) => d.resolution.count);
    const took = sum((d) => (d.resolution.average_seconds || 0) * d.resolution.count);
    tiles($("conv-tiles"), [
      ["Opened", String(sum((d) => d.opened))],
      ["Closed", String(sum((d) => d.closed))],
      ["First response", duration(answered ? waited / answered : null), `average of ${answered}`],
      ["Resolution", duration(resolved ? took / resolved : null), `average of ${resolved}`],
    ]);
  }

  async function loadReports() {
    const range = `from=${$("report-from").value}&to=${$("report-to").value}`;
    $("report-status").textContent = "Loading…";
    try {
      const [ai, days] = await Promise.all([api("GET", `/api/reporting/ai?${range}`), api("GET", `/api/reporting?${range}`)]);
      showAi(ai);
      showConversations(days);
      $("report-status").textContent = "";
      document.body.dataset.reports = "loaded";
    } catch (err) {
      $("report-status").textContent = err.message;
    }
  }

  async function openReports() {
    $("conversation").hidden = true;
    $("settings").hidden = true;
    $("reports").hidden = false;
    document.body.dataset.view = "reports";
    if (!$("report-to").value) {
      const today = new Date();
      $("report-to").value = today.toISOString().slice(0, 10);
      $("report-from").value = new Date(today.getTime() - 29 * 86400000).toISOString().slice(0, 10);
    }
    await loadReports();
  }

  $("open-reports").addEventListener("click", () => openReports().catch((e) => alert(e.message)));
  $("close-reports").addEventListener("click", () => {
    $("reports").hidden = true;
    document.body.dataset.view = "inbox";
    if (state.conversation) $("conversation").hidden = false;
  });
  $("report-form").addEventListener("submit", (e) => {
    e.preventDefault();
    loadReports();
  });

  // ----- settings -----

  function snippet() {
    const origin = window.location.origin;
    return `<script src="${origin}/widget.js" data-account-id="${state.session.account_id}" async></script>`;
  }

  async function openSettings() {
    $("conversation").hidden = true;
    $("reports").hidden = true;
    $("settings").hidden = false;
    document.body.dataset.view = "settings";
    const ctx = await api("GET", "/api/business_context").catch(() => null);
    if (ctx) {
      $("ctx-name").value = ctx.business_name || "";
      $("ctx-description").value = ctx.business_description || "";
      $("ctx-instructions").value = ctx.instructions || "";
      $("ctx-link").value = ctx.scheduling_link || "";
      $("ctx-llm").checked = !!ctx.llm_enabled;
    }
    // A change the agent makes while this read is under way wins over what the read brings back.
    const edits = state.notifyEdits || 0;
    const notify = await api("GET", "/api/me/notifications").catch(() => null);
    if (notify && (state.notifyEdits || 0) === edits) $("notify-new").checked = notify.new_conversation_emails;
    const widget = await api("GET", `/api/widget_settings?account_id=${state.session.account_id}`);
    $("w-title").value = widget.title;
    $("w-subtitle").value = widget.subtitle;
    $("w-color").value = /^#[0-9a-f]{6}$/i.test(widget.primary_color) ? widget.primary_color : "#2563eb";
    $("w-greeting").value = widget.greeting;
    $("w-locale").value = widget.locale || "";
    $("w-reply-time").value = widget.reply_time || "";
    $("snippet").textContent = snippet();
    $("preview").src = `/chat?accountId=${state.session.account_id}`;
    await showIdentity();
    await showIntegrations();
    const team = await api("GET", "/api/users").catch(() => []);
    $("team").replaceChildren(
      ...team.map((u) => {
        const item = el("li", `${u.display_name || u.email} (${u.email})${u.disabled ? " — disabled" : ""} `);
        item.dataset.user = u.id;
        if (u.role && u.id !== state.session.user_id) {
          const role = el("select");
          role.setAttribute("aria-label", `Role of ${u.email}`);
          ["admin", "member", "viewer"].forEach((r) => {
            const option = el("option", r);
            option.value = r;
            role.appendChild(option);
          });
          role.value = u.role;
          role.addEventListener("change", () =>
            api("PUT", `/api/users/${u.id}/role`, { role: role.value }).then(openSettings).catch((e) => alert(e.message)),
          );
          item.appendChild(role);
          const toggle = el("button", u.disabled ? "Enable" : "Disable");
          toggle.type = "button";
          toggle.addEventListener("click", () =>
            api("POST", `/api/users/${u.id}/${u.disabled ? "enable" : "disable"}`).then(openSettings).catch((e) => alert(e.message)),
          );
          item.appendChild(toggle);
        } else {
          item.appendChild(el("span", u.role || "invited", "muted"));
        }
        return item;
      }),
    );
    const keys = await api("GET", "/api/personal_api_keys").catch(() => []);
    $("keys").replaceChildren(
      ...keys
        .filter((k) => !k.revoked_at)
        .map((k) => {
          const item = el("li", `${k.name || "key"} (${k.preview}) `);
          item.dataset.key = k.id;
          const revoke = el("button", "Revoke");
          revoke.type = "button";
          revoke.setAttribute("aria-label", `Revoke key ${k.name || k.preview}`);
          revoke.addEventListener("click", () =>
            api("DELETE", `/api/personal_api_keys/${k.id}`).then(openSettings).catch((e) => alert(e.message)),
          );
          item.appendChild(revoke);
          return item;
        }),
    );
  }

  // Identity verification (admins only: others get 403 and do not see the card).
  const identity = { secret: null, shown: false };
  function showSecret() {
    const secret = identity.secret;
    $("identity-secret").textContent = !secret ? "none yet" : identity.shown ? secret : `${secret.slice(0, 6)}…`;
    $("identity-reveal").hidden = !secret;
    $("identity-reveal").textContent = identity.shown ? "Hide" : "Show";
  }
  function applyIdentity(v) {
    identity.secret = v.secret;
    $("identity").hidden = false;
    $("identity-required").checked = !!v.require_identity_verification;
    showSecret();
  }
  async function showIdentity() {
    const v = await api("GET", "/api/identity_verification").catch(() => null);
    if (v) applyIdentity(v);
    else $("identity").hidden = true;
  }
  $("identity-reveal").addEventListener("click", () => {
    identity.shown = !identity.shown;
    showSecret();
  });
  $("identity-rotate").addEventListener("click", async () => {
    if (identity.secret && !window.confirm("Hashes made with the current secret will stop working. Issue a new secret?")) return;
    try {
      identity.shown = true;
      applyIdentity(await api("POST", "/api/identity_verification/secret", {}));
      $("identity-status").textContent = "New secret issued: update your server.";
    } catch (err) {
      $("identity-status").textContent = err.message;
    }
  });
  $("identity-required").addEventListener("change", async (e) => {
    try {
      applyIdentity(await api("PUT", "/api/identity_verification", { require_identity_verification: e.target.checked }));
      $("identity-status").textContent = e.target.checked ? "Verification is required." : "Verification is optional.";
    } catch (err) {
      e.target.checked = !e.target.checked;
      $("identity-status").textContent = err.message;
    }
  });

  // Integrations (admins only: others get 403 and do not see the card): Slack, Gmail, email, Twilio, webhooks.
  async function showIntegrations() {
    const slack = await api("GET", "/api/slack").catch(() => null);
    $("integrations").hidden = !slack;
    if (!slack) return;
    $("slack-link").hidden = !slack.configured || slack.installed;
    $("slack-unlink").hidden = !slack.installed;
    $("slack-map").hidden = !slack.installed;
    $("slack-status").textContent = !slack.configured
      ? "Slack is not configured on this server (SLACK_CLIENT_ID, SLACK_CLIENT_SECRET, SLACK_SIGNING_SECRET)."
      : slack.installed
        ? `Linked to ${slack.team_name || slack.team_id}.`
        : "Not linked.";
    $("slack-map").dataset.inbox = slack.inbox_id || "";
    if (slack.installed) {
      const mapped = (slack.mappings[0] || {}).channel_id;
      const channels = await api("GET", "/api/slack/channels").catch((e) => {
        $("slack-status").textContent += ` ${e.message}`;
        return [];
      });
      $("slack-channel").replaceChildren(
        ...channels.map((c) => {
          const option = el("option", `#${c.name}${c.is_member ? "" : " (invite the bot first)"}`);
          option.value = c.id;
          option.selected = c.id === mapped;
          return option;
        }),
      );
    }
    showGmail(await api("GET", "/api/gmail").catch(() => null));
    showTwilio(await api("GET", "/api/twilio/authorization").catch(() => null));
    showInboundEmail(await api("GET", "/api/email/inbound").catch((e) => ({ error: e.message })));
    const hooks = await api("GET", "/api/event_subscriptions").catch(() => []);
    $("hooks").replaceChildren(
      ...hooks.map((h) => {
        const item = el("li", `${h.url} — ${h.events.join(", ")} `);
        const test = el("button", "Send test event");
        test.type = "button";
        test.addEventListener("click", async () => {
          const sent = await api("POST", `/api/event_subscriptions/${h.id}/test`, {}).catch((e) => ({ state: e.message }));
          $("hook-status").textContent = `Test event: ${sent.state}${sent.response_status ? ` (HTTP ${sent.response_status})` : ""}${sent.error ? ` — ${sent.error}` : ""}`;
        });
        const remove = el("button", "Delete");
        remove.type = "button";
        remove.setAttribute("aria-label", `Delete webhook ${h.url}`);
        remove.addEventListener("click", () =>
          api("DELETE", `/api/event_subscriptions/${h.id}`).then(showIntegrations).catch((e) => alert(e.message)),
        );
        item.append(test, " ", remove);
        return item;
      }),
    );
  }
  $("private").addEventListener("change", showDeliveryHint);
  $("notify-new").addEventListener("change", async (e) => {
    state.notifyEdits = (state.notifyEdits || 0) + 1;
    const on = e.target.checked;
    try {
      await api("PUT", "/api/me/notifications", { new_conversation_emails: on });
      $("notify-status").textContent = on ? "You will be emailed." : "You will not be emailed.";
    } catch (err) {
      e.target.checked = !on;
      $("notify-status").textContent = err.message;
    }
  });
  $("twilio-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const linked = await api("PUT", "/api/twilio/authorization", {
        account_sid: $("twilio-sid").value.trim(),
        auth_token: $("twilio-token").value.trim(),
        from_number: $("twilio-number").value.trim(),
      });
      $("twilio-token").value = "";
      showTwilio(linked);
    } catch (err) {
      $("twilio-status").textContent = err.message;
    }
  });
  $("twilio-unlink").addEventListener("click", async () => {
    if (!window.confirm("Unlink Twilio? SMS stop arriving and replies are no longer sent.")) return;
    await api("DELETE", "/api/twilio/authorization").catch((e) => alert(e.message));
    showGmail(await api("GET", "/api/gmail").catch(() => null));
    showTwilio(await api("GET", "/api/twilio/authorization").catch(() => null));
    showInboundEmail(await api("GET", "/api/email/inbound").catch((e) => ({ error: e.message })));
  });

  function showInboundEmail(inbound) {
    if (!inbound) return;
    if (inbound.error) {
      $("email-inbound").textContent = inbound.error;
      return;
    }
    const address = inbound.address
      ? `Forward your support mail to ${inbound.address}.`
      : "Set INBOUND_EMAIL_DOMAIN on the server for an address to forward mail to.";
    const hook = inbound.webhook_url || `<NETIA_PUBLIC_URL>${inbound.webhook_path}`;
    $("email-inbound").textContent = `${address} Or have a forwarding service post each raw message to ${hook}.`;
  }
  $("email-rotate").addEventListener("click", async () => {
    if (!window.confirm("Issue a new webhook token? The current webhook URL stops working.")) return;
    showInboundEmail(await api("POST", "/api/email/inbound/rotate", {}).catch((e) => ({ error: e.message })));
  });

  function showTwilio(twilio) {
    if (!twilio) return;
    $("twilio-unlink").hidden = !twilio.linked;
    $("twilio-status").textContent = twilio.linked
      ? `Linked: ${twilio.from_number} (${twilio.account_sid}). In Twilio, set the number's "A message comes in" webhook to ${twilio.webhook_url || "<NETIA_PUBLIC_URL>/api/twilio/webhook"} (HTTP POST).`
      : "Not linked: enter your Twilio account SID, auth token and number.";
    if (twilio.linked) {
      $("twilio-sid").value = twilio.account_sid;
      $("twilio-number").value = twilio.from_number;
    }
  }

  function showGmail(gmail) {
    if (!gmail) return;
    $("gmail-link").hidden = !gmail.configured || gmail.linked;
    $("gmail-sync").hidden = !gmail.linked;
    $("gmail-unlink").hidden = !gmail.linked;
    $("gmail-status").textContent = !gmail.configured
      ? "Gmail is not configured on this server (GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET)."
      : gmail.linked
        ? `Linked: ${gmail.email_address}. New mail becomes conversations within a minute; replies are sent from this address.`
        : "Not linked.";
  }
  $("gmail-link").addEventListener("click", async () => {
    try {
      const started = await api("GET", "/api/gmail/oauth/start");
      window.location.assign(started.url);
    } catch (err) {
      $("gmail-status").textContent = err.message;
    }
  });
  $("gmail-sync").addEventListener("click", async () => {
    try {
      const synced = await api("POST", "/api/gmail/sync", {});
      $("gmail-status").textContent = `Synced: ${synced.taken} message${synced.taken === 1 ? "" : "s"} read${synced.resynced ? " (the last 7 days again)" : ""}.`;
    } catch (err) {
      $("gmail-status").textContent = err.message;
    }
  });
  $("gmail-unlink").addEventListener("click", async () => {
    if (!window.confirm("Unlink Gmail? New mail stops arriving and replies are no longer sent.")) return;
    await api("DELETE", "/api/gmail").catch((e) => alert(e.message));
    showGmail(await api("GET", "/api/gmail").catch(() => null));
  });
  $("slack-link").addEventListener("click", async () => {
    try {
      const started = await api("GET", "/api/slack/oauth/start");
      window.location.assign(started.url);
    } catch (err) {
      $("slack-status").textContent = err.message;
    }
  });
  $("slack-unlink").addEventListener("click", async () => {
    if (!window.confirm("Unlink Slack? Conversations stop appearing there.")) return;
    await api("DELETE", "/api/slack").catch((e) => alert(e.message));
    showIntegrations();
  });
  $("slack-map").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("PUT", "/api/slack/mapping", { inbox_id: $("slack-map").dataset.inbox, channel_id: $("slack-channel").value });
      $("slack-status").textContent = "Saved: new conversations go to that channel.";
    } catch (err) {
      $("slack-status").textContent = err.message;
    }
  });
  $("hook-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const events = [...document.querySelectorAll("input[name=hook-event]:checked")].map((i) => i.value);
    try {
      const created = await api("POST", "/api/event_subscriptions", { url: $("hook-url").value, events });
      $("hook-url").value = "";
      await showIntegrations();
      $("hook-status").textContent = `Webhook added. Its signing secret, shown only now: ${created.secret}`;
    } catch (err) {
      $("hook-status").textContent = err.message;
    }
  });

  $("open-settings").addEventListener("click", () => openSettings().catch((e) => alert(e.message)));
  $("close-settings").addEventListener("click", () => {
    $("settings").hidden = true;
    document.body.dataset.view = "inbox";
    if (state.conversation) $("conversation").hidden = false;
  });
  $("context-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("PUT", "/api/business_context", {
        business_name: $("ctx-name").value,
        business_description: $("ctx-description").value,
        instructions: $("ctx-instructions").value,
        scheduling_link: $("ctx-link").value || null,
        llm_enabled: $("ctx-llm").checked,
      });
      $("ctx-saved").textContent = "Saved.";
    } catch (err) {
      $("ctx-saved").textContent = err.message;
    }
  });
  $("widget-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const current = await api("GET", `/api/widget_settings?account_id=${state.session.account_id}`);
      await api("PUT", "/api/widget_settings", {
        title: $("w-title").value,
        subtitle: $("w-subtitle").value,
        primary_color: $("w-color").value,
        greeting: $("w-greeting").value,
        new_message_placeholder: current.new_message_placeholder,
        show_agent_availability: current.show_agent_availability,
        is_branding_hidden: current.is_branding_hidden,
        locale: $("w-locale").value,
        reply_time: $("w-reply-time").value,
      });
      $("w-saved").textContent = "Saved.";
      $("preview").src = `/chat?accountId=${state.session.account_id}&t=${Date.now()}`;
    } catch (err) {
      $("w-saved").textContent = err.message;
    }
  });
  $("invite-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const invitation = await api("POST", "/api/user_invitations", { email: $("invite-email").value, role: $("invite-role").value });
      $("invited").textContent = `Invitation for ${invitation.email}: send them the token ${invitation.token} to register with.`;
      $("invite-email").value = "";
      openSettings();
    } catch (err) {
      $("invited").textContent = err.message;
    }
  });
  $("key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const key = await api("POST", "/api/personal_api_keys", { name: $("key-label").value });
      $("new-key").textContent = `New key "${key.name}" (shown once): ${key.key}`;
      $("key-label").value = "";
      openSettings();
    } catch (err) {
      $("new-key").textContent = err.message;
    }
  });

  // ----- notifications while the tab is hidden -----

  // A customer's new message while this tab is in the background counts in the title ("(2) Netia")
  // and, when the agent allowed it, shows a browser notification that opens its conversation.
  const TITLE = document.title;
  let unseen = 0;
  const fromCustomer = (m) => !m.private && m.customer_id && !m.user_id && m.type !== "bot";

  function alertHidden(m) {
    if (document.visibilityState !== "hidden" || !fromCustomer(m)) return;
    unseen += 1;
    document.title = `(${unseen}) ${TITLE}`;
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const name = state.names.get(m.conversation_id) || "a customer";
    const body = m.body.length > 140 ? `${m.body.slice(0, 139)}…` : m.body;
    const shown = new Notification(`New message from ${name}`, { body, tag: m.conversation_id });
    shown.onclick = () => {
      window.focus();
      openConversation(m.conversation_id).catch(() => {});
      shown.close();
    };
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    unseen = 0;
    document.title = TITLE;
  });

  function offerNotifications() {
    const button = $("enable-notifications");
    button.hidden = !("Notification" in window) || Notification.permission !== "default";
    button.onclick = () =>
      Notification.requestPermission().then(() => {
        button.hidden = Notification.permission !== "default";
      });
  }

  // ----- start -----

  function connectSocket() {
    const socket = new window.NetiaPhoenix.Socket(`${window.location.origin.replace(/^http/, "ws")}/socket`, {
      params: { token: state.session.token },
    });
    state.socket = socket;
    const notifications = socket.channel(`notification:${state.session.account_id}`, {});
    ["conversation:created", "conversation:updated", "read"].forEach((event) =>
      notifications.on(event, () => refreshSoon()),
    );
    notifications.on("shout", (m) => {
      refreshSoon();
      alertHidden(m);
    });
    const agents = new Set();
    const showOnline = () => ($("online").textContent = `${agents.size} agent${agents.size === 1 ? "" : "s"} online`);
    notifications.on("presence_state", (s) => {
      agents.clear();
      Object.keys(s).forEach((k) => agents.add(k));
      showOnline();
    });
    notifications.on("presence_diff", (d) => {
      Object.keys(d.joins || {}).forEach((k) => agents.add(k));
      Object.keys(d.leaves || {}).forEach((k) => agents.delete(k));
      showOnline();
    });
    notifications.onJoin(() => {
      document.body.dataset.live = "true";
      refreshSoon();
    });
    // Being in the account's room is what shows customers' widgets that agents are online.
    const room = socket.channel(`room:${state.session.account_id}`, {});
    socket.connect();
    notifications.join();
    room.join();
  }

  async function start() {
    $("login").hidden = true;
    $("app").hidden = false;
    document.body.dataset.view = "inbox";
    try {
      state.users = await api("GET", "/api/users").catch(() => []);
      const canned = await api("GET", "/api/canned_responses").catch(() => []);
      $("canned").replaceChildren(el("option", "—"));
      $("canned").firstChild.value = "";
      canned.forEach((r) => {
        const option = el("option", r.name);
        option.value = r.body;
        $("canned").appendChild(option);
      });
      await Promise.all([refreshCounts(), refreshList()]);
      connectSocket();
      offerNotifications();
    } catch (e) {
      console.warn("netia: dashboard failed to start", e);
    }
  }

  const stored = localStorage.getItem(TOKEN);
  if (stored) {
    try {
      state.session = JSON.parse(stored);
    } catch (_) {
      state.session = null;
    }
  }
  if (state.session && state.session.token) {
    start();
    // Back from Slack's install page: show where it landed; a link from Slack opens its conversation.
    const hash = window.location.hash;
    if (hash === "#integrations") openSettings().catch(() => {});
    const linked = /^#conversation=([0-9a-f-]{36})$/.exec(hash);
    if (linked) openConversation(linked[1]).catch(() => {});
  } else showLogin();
})();
