// The chat widget page (/chat), meant for an iframe. Lifecycle: read the URL parameters → fetch the
// widget settings → create (or reuse, across reloads) the customer → resume or open the conversation
// → load its history → connect the socket → join → ready. Messages are always rendered as text.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  // The server's TYPING_REFRESH and TYPING_TTL (src/realtime/mod.rs).
  const TYPING_REFRESH_MS = 2000;
  const TYPING_TTL_MS = 6000;
  // A message the server did not answer is sent again after this long (while joined).
  const RESEND_AFTER_MS = 3000;
  // What the widget says, in each language it speaks (the account's `locale`, the `locale` URL
  // parameter, or the browser's language; English otherwise).
  const STRINGS = {
    en: {
      title: "Welcome!", subtitle: "Ask us anything below.", placeholder: "Start typing…", send: "Send",
      yourMessage: "Your message", connecting: "Connecting…", reconnecting: "Reconnecting…",
      bot: "AI assistant", agent: "Agent", retrying: "Not sent yet — will retry", online: "We're online!",
      away: "We're away at the moment.", botTyping: "AI is typing…", typing: "{name} is typing…",
      notSetUp: "This chat is not set up: the accountId parameter is missing or invalid.",
      unavailable: "The chat is unavailable right now. Please try again later.", poweredBy: "Powered by",
      emailAsk: "Nobody is here right now. Leave your email and we'll reply there.",
      emailLabel: "Your email", emailSave: "Notify me", emailSaved: "Thanks! We'll email you at {email}.",
      emailInvalid: "Please enter a valid email address.", emailFailed: "That did not work: {reason}",
      messages: "Messages", chat: "Chat",
      replyMinutes: "We typically reply in a few minutes.", replyHours: "We typically reply in a few hours.",
      replyDay: "We typically reply within a day.",
      attach: "Attach a file", download: "Download", uploading: "Sending {name}…",
      uploadFailed: "Could not send {name}: {reason}", sent: "Sent", seen: "Seen",
    },
    fr: {
      title: "Bienvenue !", subtitle: "Posez-nous vos questions ci-dessous.", placeholder: "Écrivez votre message…",
      send: "Envoyer", yourMessage: "Votre message", connecting: "Connexion…", reconnecting: "Reconnexion…",
      bot: "Assistant IA", agent: "Conseiller", retrying: "Pas encore envoyé — nouvel essai bientôt",
      online: "Nous sommes en ligne !", away: "Nous sommes absents pour le moment.", botTyping: "L'IA écrit…",
      typing: "{name} écrit…", notSetUp: "Ce chat n'est pas configuré : le paramètre accountId manque ou est invalide.",
      unavailable: "Le chat est indisponible pour le moment. Réessayez plus tard.", poweredBy: "Propulsé par",
      emailAsk: "Personne n'est disponible pour le moment. Laissez votre e-mail, nous vous répondrons par e-mail.",
      emailLabel: "Votre e-mail", emailSave: "Me prévenir", emailSaved: "Merci ! Nous vous écrirons à {email}.",
      emailInvalid: "Saisissez une adresse e-mail valide.", emailFailed: "Cela n'a pas fonctionné : {reason}",
      messages: "Messages", chat: "Chat",
      replyMinutes: "Nous répondons généralement en quelques minutes.",
      replyHours: "Nous répondons généralement en quelques heures.", replyDay: "Nous répondons généralement sous un jour.",
      attach: "Joindre un fichier", download: "Télécharger", uploading: "Envoi de {name}…",
      uploadFailed: "Impossible d'envoyer {name} : {reason}", sent: "Envoyé", seen: "Vu",
    },
    de: {
      title: "Willkommen!", subtitle: "Fragen Sie uns einfach hier unten.", placeholder: "Nachricht eingeben…",
      send: "Senden", yourMessage: "Ihre Nachricht", connecting: "Verbinden…", reconnecting: "Neu verbinden…",
      bot: "KI-Assistent", agent: "Support", retrying: "Noch nicht gesendet — neuer Versuch folgt",
      online: "Wir sind online!", away: "Wir sind gerade nicht da.", botTyping: "Die KI schreibt…",
      typing: "{name} schreibt…", notSetUp: "Dieser Chat ist nicht eingerichtet: accountId fehlt oder ist ungültig.",
      unavailable: "Der Chat ist gerade nicht verfügbar. Bitte versuchen Sie es später erneut.", poweredBy: "Bereitgestellt von",
      emailAsk: "Gerade ist niemand da. Hinterlassen Sie Ihre E-Mail-Adresse, wir antworten dorthin.",
      emailLabel: "Ihre E-Mail-Adresse", emailSave: "Benachrichtigen", emailSaved: "Danke! Wir schreiben Ihnen an {email}.",
      emailInvalid: "Bitte geben Sie eine gültige E-Mail-Adresse ein.", emailFailed: "Das hat nicht geklappt: {reason}",
      messages: "Nachrichten", chat: "Chat",
      replyMinutes: "Wir antworten in der Regel innerhalb weniger Minuten.",
      replyHours: "Wir antworten in der Regel innerhalb weniger Stunden.", replyDay: "Wir antworten in der Regel innerhalb eines Tages.",
      attach: "Datei anhängen", download: "Herunterladen", uploading: "{name} wird gesendet…",
      uploadFailed: "{name} konnte nicht gesendet werden: {reason}", sent: "Gesendet", seen: "Gelesen",
    },
    es: {
      title: "¡Bienvenido!", subtitle: "Pregúntanos lo que quieras aquí abajo.", placeholder: "Escribe tu mensaje…",
      send: "Enviar", yourMessage: "Tu mensaje", connecting: "Conectando…", reconnecting: "Reconectando…",
      bot: "Asistente de IA", agent: "Agente", retrying: "Aún no enviado — se reintentará",
      online: "¡Estamos en línea!", away: "Ahora mismo no estamos disponibles.", botTyping: "La IA está escribiendo…",
      typing: "{name} está escribiendo…", notSetUp: "Este chat no está configurado: falta el parámetro accountId o no es válido.",
      unavailable: "El chat no está disponible ahora. Inténtalo de nuevo más tarde.", poweredBy: "Con la tecnología de",
      emailAsk: "Ahora no hay nadie. Déjanos tu correo y te responderemos allí.",
      emailLabel: "Tu correo electrónico", emailSave: "Avisarme", emailSaved: "¡Gracias! Te escribiremos a {email}.",
      emailInvalid: "Introduce un correo electrónico válido.", emailFailed: "No ha funcionado: {reason}",
      messages: "Mensajes", chat: "Chat",
      replyMinutes: "Solemos responder en unos minutos.", replyHours: "Solemos responder en unas horas.",
      replyDay: "Solemos responder en un día.",
      attach: "Adjuntar un archivo", download: "Descargar", uploading: "Enviando {name}…",
      uploadFailed: "No se pudo enviar {name}: {reason}", sent: "Enviado", seen: "Visto",
    },
  };
  let strings = STRINGS.en;
  /** The string `key` in the widget's language, with `{name}` placeholders filled from `vars`. */
  function t(key, vars) {
    const text = strings[key] || STRINGS.en[key] || key;
    return text.replace(/\{(\w+)\}/g, (_, name) => (vars && vars[name] !== undefined ? String(vars[name]) : ""));
  }
  /** The first of `candidates` the widget speaks (`fr-CA` → `fr`), or English. */
  function chooseLocale(candidates) {
    for (const candidate of candidates) {
      const code = String(candidate || "").toLowerCase().split(/[-_]/)[0];
      if (STRINGS[code]) return code;
    }
    return "en";
  }
  function setLocale(code) {
    strings = STRINGS[code];
    document.documentElement.lang = code;
    $("message").setAttribute("aria-label", t("yourMessage"));
    document.querySelector('label[for="message"]').textContent = t("yourMessage");
    $("send").textContent = t("send");
    $("attach").setAttribute("aria-label", t("attach"));
    $("attach").title = t("attach");
    $("messages").setAttribute("aria-label", t("messages"));
    document.querySelector("main").setAttribute("aria-label", t("chat"));
    $("branding").firstChild.textContent = t("poweredBy") + " ";
    $("email-label").textContent = t("emailLabel");
    $("email-save").textContent = t("emailSave");
    $("email-ask").textContent = t("emailAsk");
  }

  // Without an answer this long after the customer's message, the widget offers email replies.
  const EMAIL_ASK_AFTER_MS = 120000;
  const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
  // In an iframe (widget.js), the host page says whether the chat is open; alone, it always is.
  const EMBEDDED = window.parent !== window;

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
      locale: text("locale", 10),
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
    availabilityKnown: false,
    showAvailability: false,
    open: !EMBEDDED,
    unread: 0,
    awaitingReply: false,
    emailAskTimer: null,
    emailKnown: false,
  };

  function setStatus(text) {
    $("status").textContent = text;
  }

  // WCAG 2.x relative luminance of a #rgb or #rrggbb colour.
  function luminance(hex) {
    const digits = hex.length === 4 ? [...hex.slice(1)].map((d) => d + d) : [hex.slice(1, 3), hex.slice(3, 5), hex.slice(5, 7)];
    const [r, g, b] = digits.map((d) => {
      const c = parseInt(d, 16) / 255;
      return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  }
  /** White or near-black, whichever reads better on `hex` (WCAG contrast ratio): the account's
   *  colour stays, its text stays legible. */
  function inkOn(hex) {
    const l = luminance(hex);
    const onWhite = 1.05 / (l + 0.05);
    const onDark = (l + 0.05) / (luminance("#111827") + 0.05);
    return onWhite >= onDark ? "#ffffff" : "#111827";
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
    setLocale(chooseLocale([params.locale, settings.locale, ...(navigator.languages || []), navigator.language]));
    const title = pick(params.title, settings.title, t("title"));
    $("title").textContent = title;
    document.title = title;
    $("subtitle").textContent = pick(params.subtitle, settings.subtitle, t("subtitle"));
    const color = pick(params.primaryColor, COLOR.test(settings.primary_color || "") ? settings.primary_color : undefined, "#2563eb");
    document.documentElement.style.setProperty("--primary", color);
    document.documentElement.style.setProperty("--on-primary", inkOn(color));
    $("message").placeholder = pick(params.newMessagePlaceholder, settings.new_message_placeholder, t("placeholder"));
    $("branding").hidden = pick(params.isBrandingHidden, settings.is_branding_hidden, false);
    state.showAvailability = pick(params.showAgentAvailability, settings.show_agent_availability, false);
    state.greeting = pick(params.greeting, settings.greeting, "");
    const replyTime = { minutes: "replyMinutes", hours: "replyHours", day: "replyDay" }[settings.reply_time];
    $("reply-time").textContent = replyTime ? t(replyTime) : "";
    $("reply-time").hidden = !replyTime;
    if (params.companyName) $("branding").dataset.company = params.companyName;
  }

  function kindLabel(message) {
    if (message.type === "bot") return t("bot");
    if (fromCustomer(message)) return "";
    return message.author_name || params.companyName || t("agent");
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
    const failed = options && (options.failed || options.error);
    el.className = "message" + (mine ? " mine" : "") + (options && options.pending ? " pending" : "") + (failed ? " failed" : "");
    el.dataset.state = options && options.pending ? "pending" : failed ? "failed" : "sent";
    el.dataset.type = message.type || "customer";
    el.textContent = message.body; // text, never HTML
    window.NetiaFiles.render(el, message.attachments, fileOptions);
    // A file without a caption shows on its own, without a bubble.
    el.classList.toggle("file-only", !message.body && Boolean(message.attachments && message.attachments.length));
    const label = kindLabel(message);
    if (label || failed) {
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = failed ? options.error || t("retrying") : label;
      el.appendChild(meta);
    }
    if (mine && message.id) {
      // Sent, or seen by an agent (the conversation's read receipts): shown under the latest.
      el.dataset.version = message.version;
      if (message.seen_at) el.dataset.seen = "true";
      const status = document.createElement("span");
      status.className = "meta delivery";
      el.appendChild(status);
      showStatus(el);
    }
    if (message.id) state.rendered.set(message.id, el);
    if (message.client_message_id) state.rendered.set(message.client_message_id, el);
    markLatest();
    $("messages").scrollTop = $("messages").scrollHeight;
    if (!mine && !(options && options.pending)) markSeenSoon();
  }

  const fileOptions = {
    baseUrl: params.baseUrl,
    token: () => (state.customer ? state.customer.token : ""),
    labels: {
      get download() {
        return t("download");
      },
    },
  };

  function showStatus(el) {
    const status = el.querySelector(".delivery");
    if (status) status.textContent = t(el.dataset.seen === "true" ? "seen" : "sent");
  }

  /** Marks the customer's latest saved message, whose status line shows. */
  function markLatest() {
    const mine = document.querySelectorAll('#messages .message.mine[data-state="sent"]');
    mine.forEach((m, i) => m.classList.toggle("latest", i === mine.length - 1));
  }

  /** An agent read the conversation: the customer's messages before `before_version` are seen. */
  function seenUpTo(beforeVersion) {
    document.querySelectorAll("#messages .message.mine[data-version]").forEach((m) => {
      if (Number(m.dataset.version) < beforeVersion) {
        m.dataset.seen = "true";
        showStatus(m);
      }
    });
  }

  /** Sends `file` as a message; a pending bubble stands for it until the server answers. */
  async function sendFile(file) {
    const id = newId();
    render({ client_message_id: id, body: t("uploading", { name: file.name }), type: "customer" }, { pending: true });
    try {
      const saved = await window.NetiaFiles.upload(fileOptions, state.conversationId, file, { client_message_id: id });
      const pending = state.rendered.get(id);
      state.rendered.delete(id);
      if (pending && state.rendered.get(saved.id) !== pending) pending.remove();
      render(saved);
      awaitReply();
    } catch (e) {
      const reason = e.message || String(e);
      render({ client_message_id: id, body: file.name, type: "customer" }, { error: t("uploadFailed", { name: file.name, reason }) });
    }
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
      if (state.open && document.visibilityState === "visible" && state.channel && state.channel.state === "joined") {
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
        awaitReply();
      })
      .receive("error", (e) => {
        render({ client_message_id: id, body, type: "customer" }, { failed: true });
        console.warn("netia: message refused", e);
      })
      .receive("timeout", () => {
        // No answer (a slow network): shown as not sent yet, and sent again with the same
        // client_message_id, which the server saves once.
        render({ client_message_id: id, body, type: "customer" }, { failed: true });
        setTimeout(() => {
          if (state.unsent.has(id) && state.channel && state.channel.state === "joined") send(body, id);
        }, RESEND_AFTER_MS);
      });
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
    el.textContent = state.agentsOnline > 0 ? t("online") : t("away");
  }

  /** Tells the host page how many answers arrived while the chat was closed (its launcher badge). */
  function postUnread() {
    if (EMBEDDED) window.parent.postMessage({ type: "netia:unread", count: state.unread }, "*");
  }

  window.addEventListener("message", (event) => {
    if (event.source !== window.parent || !event.data || event.data.type !== "netia:open") return;
    state.open = Boolean(event.data.open);
    if (state.open) {
      state.unread = 0;
      postUnread();
      markSeenSoon();
    }
  });

  // Email replies: offered once the customer has written and nobody is online, or nobody has
  // answered for EMAIL_ASK_AFTER_MS; never when the customer's email is known.
  function emailKey() {
    return `netia:${params.accountId}:email:${state.customer && state.customer.id}`;
  }
  function awaitReply() {
    state.awaitingReply = true;
    clearTimeout(state.emailAskTimer);
    state.emailAskTimer = setTimeout(() => maybeAskEmail(true), EMAIL_ASK_AFTER_MS);
    maybeAskEmail(false);
  }
  function replied() {
    state.awaitingReply = false;
    clearTimeout(state.emailAskTimer);
  }
  function maybeAskEmail(waitedLong) {
    if (state.emailKnown || !state.awaitingReply) return;
    const nobodyOnline = state.availabilityKnown && state.agentsOnline === 0;
    if (!nobodyOnline && !waitedLong) return;
    const form = $("email-capture");
    if (form.hidden) {
      form.hidden = false;
      $("email-status").textContent = "";
    }
  }
  $("email-capture").addEventListener("submit", async (event) => {
    event.preventDefault();
    const email = $("email").value.trim();
    if (!EMAIL.test(email)) {
      $("email-status").textContent = t("emailInvalid");
      $("email").setAttribute("aria-invalid", "true");
      return;
    }
    $("email").removeAttribute("aria-invalid");
    $("email-save").disabled = true;
    try {
      const saved = await api("PUT", `/api/customers/${state.customer.id}/email`, state.customer.token, { email });
      state.emailKnown = true;
      storage.setItem(emailKey(), "1");
      $("email-ask").hidden = true;
      $("email-capture").querySelector(".email-row").hidden = true;
      $("email-status").textContent = t("emailSaved", { email: saved.email || email });
    } catch (e) {
      $("email-status").textContent = t("emailFailed", { reason: e.message });
    } finally {
      $("email-save").disabled = false;
    }
  });

  async function loadHistory() {
    const messages = await api("GET", `/api/conversations/${state.conversationId}/messages?limit=200`, state.customer.token);
    messages.forEach((m) => render(m));
    renderGreeting();
  }

  // What the agents see of the visitor: the page, the browser, the time zone and the language.
  function customerMetadata() {
    const metadata = { current_url: document.referrer || window.location.href, user_agent: navigator.userAgent };
    try {
      const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (zone) metadata.time_zone = zone;
    } catch (_) {}
    if (navigator.language) metadata.locale = navigator.language;
    return metadata;
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
      metadata: customerMetadata(),
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
    socket.onClose(() => setStatus(t("reconnecting")));
    const channel = socket.channel(`conversation:${state.conversationId}`, {});
    state.channel = channel;
    let typingShown = null;
    const hideTyping = () => {
      $("typing").hidden = true;
      clearTimeout(typingShown);
    };
    channel.on("shout", (message) => {
      if (message.private) return;
      const answer = !fromCustomer(message);
      if (answer) {
        hideTyping(); // the answer arrived
        if (message.type !== "bot") replied();
        if (!state.open && !state.rendered.has(message.id)) {
          state.unread += 1;
          postUnread();
        }
      }
      render(message);
    });
    channel.on("messages:seen", (read) => seenUpTo(Number(read.before_version) || 0));
    channel.on("typing", (typist) => {
      if (typist.customer_id) return; // ourselves in another tab
      const el = $("typing");
      el.hidden = !typist.typing;
      el.textContent = typist.bot ? t("botTyping") : t("typing", { name: params.companyName || t("agent") });
      clearTimeout(typingShown);
      // Typists repeat themselves every TYPING_REFRESH_MS; one not heard from is gone.
      if (typist.typing) typingShown = setTimeout(hideTyping, TYPING_TTL_MS);
    });
    let first = true;
    channel.onJoin(async () => {
      setStatus("");
      $("message").disabled = false;
      $("send").disabled = false;
      $("attach").disabled = false;
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
      state.availabilityKnown = true;
      showAvailability();
      maybeAskEmail(false);
    });
    socket.connect();
    channel.join();
    room.join();
  }

  async function start() {
    setLocale(chooseLocale([params.locale, ...(navigator.languages || []), navigator.language]));
    setStatus(t("connecting"));
    if (!params.accountId) {
      setStatus(t("notSetUp"));
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
      state.emailKnown = Boolean(params.customerEmail) || storage.getItem(emailKey()) === "1";
      await loadHistory();
      connect();
    } catch (e) {
      setStatus(t("unavailable"));
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
  $("attach").addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", () => {
    const files = Array.from($("file").files || []);
    $("file").value = "";
    if (state.channel) files.forEach(sendFile);
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
