// Netia's own small Phoenix Channels V2 client for its pages (see PHOENIX.md): one socket, channels,
// pushes with replies and timeouts, heartbeats, reconnection with backoff, rejoin of joined channels.
// No dependencies, no build step. Exposes window.NetiaPhoenix = { Socket }.
(function (global) {
  "use strict";

  const HEARTBEAT_MS = 30000;
  const PUSH_TIMEOUT_MS = 10000;
  const RECONNECT_MS = [500, 1000, 2000, 5000, 10000];
  const REJOIN_MS = [1000, 2000, 5000, 10000];

  class Push {
    constructor(channel, event, payload, timeout) {
      this.channel = channel;
      this.event = event;
      this.payload = payload || {};
      this.timeout = timeout || PUSH_TIMEOUT_MS;
      this.hooks = [];
      this.result = null;
      this.ref = null;
      this.timer = null;
    }

    receive(status, callback) {
      if (this.result && this.result.status === status) callback(this.result.response);
      this.hooks.push({ status, callback });
      return this;
    }

    send(joinRef) {
      const socket = this.channel.socket;
      this.ref = socket.makeRef();
      this.result = null;
      socket.pushes.set(this.ref, this);
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.resolve("timeout", {}), this.timeout);
      socket.send([joinRef || this.channel.joinRef, this.ref, this.channel.topic, this.event, this.payload]);
    }

    resolve(status, response) {
      clearTimeout(this.timer);
      this.channel.socket.pushes.delete(this.ref);
      if (this.result) return;
      this.result = { status, response };
      this.hooks.filter((h) => h.status === status).forEach((h) => h.callback(response));
    }
  }

  class Channel {
    constructor(socket, topic, params) {
      this.socket = socket;
      this.topic = topic;
      this.params = params || {};
      this.bindings = [];
      this.state = "closed"; // closed | joining | joined | errored | leaving
      this.joinRef = null;
      this.queued = [];
      this.joinPush = null;
      this.rejoinTries = 0;
      this.rejoinTimer = null;
      this.onJoined = [];
    }

    on(event, callback) {
      this.bindings.push({ event, callback });
      return this;
    }

    /** Called after every successful join (the first and each rejoin). */
    onJoin(callback) {
      this.onJoined.push(callback);
      return this;
    }

    join() {
      this.state = "joining";
      this.joinRef = this.socket.makeRef();
      const push = new Push(this, "phx_join", this.params);
      this.joinPush = push;
      push
        .receive("ok", (response) => {
          this.state = "joined";
          this.rejoinTries = 0;
          this.queued.splice(0).forEach((p) => p.send(this.joinRef));
          this.onJoined.forEach((cb) => cb(response));
        })
        .receive("error", () => this.scheduleRejoin())
        .receive("timeout", () => this.scheduleRejoin());
      if (this.socket.isConnected()) push.send(this.joinRef);
      return push;
    }

    scheduleRejoin() {
      this.state = "errored";
      clearTimeout(this.rejoinTimer);
      const wait = REJOIN_MS[Math.min(this.rejoinTries, REJOIN_MS.length - 1)];
      this.rejoinTries += 1;
      this.rejoinTimer = setTimeout(() => {
        if (this.socket.isConnected() && this.state === "errored") this.join();
      }, wait);
    }

    push(event, payload, timeout) {
      const push = new Push(this, event, payload, timeout);
      if (this.state === "joined" && this.socket.isConnected()) push.send(this.joinRef);
      else this.queued.push(push);
      return push;
    }

    leave() {
      this.state = "leaving";
      clearTimeout(this.rejoinTimer);
      const push = new Push(this, "phx_leave", {});
      if (this.socket.isConnected()) push.send(this.joinRef);
      this.socket.channels = this.socket.channels.filter((c) => c !== this);
      return push;
    }

    dispatch(event, payload, joinRef) {
      if (joinRef && joinRef !== this.joinRef) return; // an older instance's message
      if (event === "phx_error" || event === "phx_close") {
        if (this.state !== "leaving") this.scheduleRejoin();
        return;
      }
      this.bindings.filter((b) => b.event === event).forEach((b) => b.callback(payload));
    }
  }

  class Socket {
    /** `endpoint` is the socket's base URL (ws:// or wss://, ending in /socket). */
    constructor(endpoint, options) {
      this.endpoint = endpoint;
      this.params = (options && options.params) || {};
      this.channels = [];
      this.pushes = new Map();
      this.ref = 0;
      this.conn = null;
      this.tries = 0;
      this.heartbeat = null;
      this.reconnectTimer = null;
      this.stateHooks = { open: [], close: [] };
      this.closedByUs = false;
    }

    makeRef() {
      this.ref += 1;
      return String(this.ref);
    }

    isConnected() {
      return !!this.conn && this.conn.readyState === WebSocket.OPEN;
    }

    onOpen(callback) {
      this.stateHooks.open.push(callback);
    }

    onClose(callback) {
      this.stateHooks.close.push(callback);
    }

    channel(topic, params) {
      const channel = new Channel(this, topic, params);
      this.channels.push(channel);
      return channel;
    }

    connect() {
      this.closedByUs = false;
      const query = new URLSearchParams(Object.assign({ vsn: "2.0.0" }, this.params));
      const conn = new WebSocket(`${this.endpoint}/websocket?${query}`);
      this.conn = conn;
      conn.onopen = () => {
        this.tries = 0;
        clearInterval(this.heartbeat);
        this.heartbeat = setInterval(() => this.sendHeartbeat(), HEARTBEAT_MS);
        this.stateHooks.open.forEach((cb) => cb());
        this.channels.forEach((c) => {
          if (c.state !== "leaving") c.join();
        });
      };
      conn.onmessage = (message) => this.receive(message.data);
      conn.onclose = () => {
        clearInterval(this.heartbeat);
        this.pushes.forEach((p) => p.resolve("timeout", {}));
        this.channels.forEach((c) => {
          if (c.state !== "leaving") c.state = "errored";
        });
        this.stateHooks.close.forEach((cb) => cb());
        if (this.closedByUs) return;
        const wait = RECONNECT_MS[Math.min(this.tries, RECONNECT_MS.length - 1)];
        this.tries += 1;
        clearTimeout(this.reconnectTimer);
        this.reconnectTimer = setTimeout(() => this.connect(), wait);
      };
      conn.onerror = () => {};
    }

    disconnect() {
      this.closedByUs = true;
      clearTimeout(this.reconnectTimer);
      if (this.conn) this.conn.close(1000, "bye");
    }

    sendHeartbeat() {
      if (!this.isConnected()) return;
      this.send([null, this.makeRef(), "phoenix", "heartbeat", {}]);
    }

    send(frame) {
      if (this.isConnected()) this.conn.send(JSON.stringify(frame));
    }

    receive(raw) {
      let frame;
      try {
        frame = JSON.parse(raw);
      } catch (_) {
        return;
      }
      if (!Array.isArray(frame) || frame.length !== 5) return;
      const [joinRef, ref, topic, event, payload] = frame;
      if (event === "phx_reply" && ref && this.pushes.has(ref)) {
        this.pushes.get(ref).resolve(payload.status, payload.response);
        return;
      }
      this.channels.filter((c) => c.topic === topic).forEach((c) => c.dispatch(event, payload, joinRef));
    }
  }

  global.NetiaPhoenix = { Socket };
})(window);
