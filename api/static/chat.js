// Dormouse's chat page: one conversation with a service's agent over the live API.
// No framework and no build step, so the page ships inside the Python package as is.
"use strict";

(() => {
  const STORE = { key: "dormouse.key", user: "dormouse.user", chat: "dormouse.chat" };
  const WHO = { customer: "You", agent: "Agent", api: "Agent", operator: "Operator" };
  const $ = (id) => document.getElementById(id);
  const el = {
    controls: $("controls"), service: $("service"), forget: $("forget"),
    keyForm: $("key-form"), key: $("key"), keyProblem: $("key-problem"),
    chat: $("chat"), hint: $("service-help"), transcript: $("transcript"), typing: $("typing"),
    ended: $("ended"), restart: $("new-conversation"),
    composer: $("composer"), text: $("text"), send: $("send"),
    footer: $("footer"), user: $("user"),
  };

  // One conversation's view: what was shown, so the live stream and an interaction's own
  // stream, which carry the same events, show each once.
  let view = freshView(null);
  let live = null; // AbortController of the open events stream
  let replying = 0; // interactions waiting for their reply
  let starting = false; // a first message is on its way and the conversation has no id yet

  function freshView(id) {
    return { id, messages: new Set(), notes: new Set(), cursor: 0, ended: false, human: false };
  }

  // --- the key: from #key=… (then out of the address bar and history), else asked ---
  // It lives in sessionStorage: gone with the tab, never left behind in the browser profile.

  function takeKeyFromFragment() {
    const match = location.hash.match(/^#key=(.+)$/);
    if (!match) return false;
    sessionStorage.setItem(STORE.key, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
    return true;
  }

  function userId() {
    let id = localStorage.getItem(STORE.user);
    if (!id) {
      const bytes = crypto.getRandomValues(new Uint8Array(8));
      id = "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
      localStorage.setItem(STORE.user, id);
    }
    return id;
  }

  class Refused extends Error {
    constructor(status, body) {
      super((body && body.detail) || `HTTP ${status}`);
      this.status = status;
      this.body = body || {};
    }
  }

  async function call(method, path, { json, signal } = {}) {
    const headers = { Authorization: "Bearer " + sessionStorage.getItem(STORE.key) };
    if (json !== undefined) headers["Content-Type"] = "application/json";
    // Relative to the page, so a Dormouse behind a path prefix works too.
    const response = await fetch(new URL(path, document.baseURI), {
      method, headers, signal, body: json === undefined ? undefined : JSON.stringify(json),
    });
    if (response.ok) return response;
    const body = await response.json().catch(() => null);
    if (response.status === 401) askForKey("That API key was refused. Paste a valid one.");
    throw new Refused(response.status, body);
  }

  // Reads an NDJSON body as it arrives, one object per line; empty lines are heartbeats.
  async function* lines(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += value;
      let end;
      while ((end = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, end).trim();
        pending = pending.slice(end + 1);
        if (line) yield JSON.parse(line);
      }
    }
    if (pending.trim()) yield JSON.parse(pending);
  }

  // --- what the transcript shows ---

  // The transcript is kept in cursor order, whichever stream an event came on first (the
  // live stream replaying history, or an interaction's own stream): what is still being
  // sent has no cursor yet and stays below everything that has one.
  // `pending` is the item this page is sending on the stream being read: the event that is
  // that message (by the id the server gave it) takes its place.
  function show(event, pending = null) {
    if (event.conversation_id !== view.id) return;
    const cursor = Number(event.cursor) || 0;
    view.cursor = Math.max(view.cursor, cursor);
    if (event.message) return showMessage(event.message, cursor, pending);
    const once = `${event.type}:${event.cursor}:${event.reason || ""}`;
    if (view.notes.has(once)) return;
    view.notes.add(once);
    if (event.type === "handoff") {
      view.human = true;
      note("Handed to a person: they will answer here.", "note", cursor);
    } else if (event.type === "handback") {
      view.human = false;
      note("The agent is back.", "note", cursor);
    }
    else if (event.type === "interrupted") {
      note("Your new message was added: one answer to both.", "note", cursor);
    }
    else if (event.type === "error") note(event.reason || "Something went wrong.", "problem");
    else if (event.type === "end-session") end();
  }

  function showMessage(message, cursor, pending) {
    const claims = pending && pending.isConnected && pending.classList.contains("pending")
      && message.role === "customer"
      && (pending.dataset.claim === "any" || message.id === Number(pending.dataset.claim));
    if (view.messages.has(message.id)) {
      if (claims) pending.remove(); // the live stream showed it first
      return;
    }
    view.messages.add(message.id);
    const item = claims ? pending : entry(message.role, message.text);
    item.classList.remove("pending");
    item.dataset.id = message.id;
    const time = item.querySelector("time");
    time.dateTime = message.created_at;
    time.textContent = clock(message.created_at);
    place(item, cursor);
  }

  // The viewer's local time, with the zone shown (the console follows the same rule).
  function clock(iso) {
    return new Date(iso).toLocaleTimeString([], {
      hour: "2-digit", minute: "2-digit", timeZoneName: "short",
    });
  }

  function entry(role, text) {
    const item = document.createElement("li");
    item.className = `message from-${role in WHO ? role : "other"}`;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = WHO[role] || role[0].toUpperCase() + role.slice(1);
    const body = document.createElement("p");
    body.className = "text";
    body.textContent = text; // text, never markup: a message cannot inject anything
    body.dir = "auto"; // its own direction, isolated (chat.css): bidi controls stay inside
    const time = document.createElement("time");
    item.append(who, body, time);
    return item;
  }

  function note(text, kind = "note", cursor = null) {
    const item = document.createElement("li");
    item.className = kind;
    item.textContent = text;
    place(item, cursor);
  }

  // Puts an item where its cursor belongs: before the first item with a later cursor, or
  // before what is still being sent. An item without a cursor (pending, a local problem)
  // goes last.
  function place(item, cursor) {
    const atBottom = el.transcript.scrollHeight - el.transcript.scrollTop
      - el.transcript.clientHeight < 80;
    let before = null;
    if (cursor) {
      item.dataset.cursor = cursor;
      before = [...el.transcript.children].find((li) =>
        li !== item && (li.dataset.cursor ? Number(li.dataset.cursor) > cursor
          : li.classList.contains("pending")));
    }
    el.transcript.insertBefore(item, before || null);
    el.hint.hidden = true;
    if (atBottom || item.classList.contains("from-customer")) item.scrollIntoView({ block: "end" });
  }

  function setReplying(delta) {
    replying = Math.max(0, replying + delta);
    // While a person holds the chat nobody is "replying" until they choose to.
    el.typing.hidden = replying === 0 || view.ended || view.human;
  }

  function end() {
    view.ended = true;
    setReplying(0);
    el.ended.hidden = false;
    el.composer.hidden = true;
    el.transcript.scrollTop = el.transcript.scrollHeight; // the panel took the last lines' room
    el.restart.focus();
  }

  // --- the conversation ---

  function remember(id) {
    localStorage.setItem(STORE.chat, JSON.stringify({ id, service: el.service.value }));
  }

  function stored() {
    try {
      return JSON.parse(localStorage.getItem(STORE.chat) || "null");
    } catch {
      return null;
    }
  }

  function open(id) {
    if (view.id !== id) view = freshView(id);
    el.service.disabled = true;
    follow(id);
  }

  // The live view: every event from the start (so a reload rebuilds the transcript), then
  // each as it commits, operator replies included. It stays open until the chat ends, and
  // reconnects from the last cursor it saw when the connection drops.
  async function follow(id) {
    if (live) live.abort();
    const mine = new AbortController();
    live = mine;
    let wait = 1000;
    while (!mine.signal.aborted && view.id === id && !view.ended) {
      try {
        const path = `v1/conversations/${id}/events?after=${view.cursor}`;
        const response = await call("GET", path, { signal: mine.signal });
        for await (const event of lines(response)) {
          show(event);
          wait = 1000;
        }
      } catch (error) {
        if (mine.signal.aborted) return;
        if (error.status === 404) return forget(); // erased, or another Dormouse's id
        if (error.status === 401) return;
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
      wait = Math.min(wait * 2, 15000);
    }
  }

  async function say(text) {
    const item = entry("customer", text);
    item.classList.add("pending");
    place(item, null);
    setReplying(+1);
    try {
      if (view.id) await interact(view.id, text, item);
      else await start(text, item);
    } catch (error) {
      item.classList.add("failed");
      item.querySelector("time").textContent = "Not sent";
      if (error.status === 409 && view.id) end(); // the chat finished meanwhile
      else if (error.status !== 401) note(error.message, "problem");
    } finally {
      setReplying(-1);
    }
  }

  async function start(text, pending) {
    const body = { service: el.service.value, user_id: userId(), message: text };
    let response;
    starting = true;
    try {
      response = await call("POST", "v1/chat/conversations", { json: body });
    } catch (error) {
      starting = false;
      const open409 = error.status === 409 && error.body.conversation_id;
      if (!open409) throw error;
      // A chat with this service is still open for this user: carry on in it, its
      // history first (the live stream replays it), then what this page was sending.
      remember(error.body.conversation_id);
      open(error.body.conversation_id);
      return interact(error.body.conversation_id, text, pending);
    }
    // A new chat holds one message from this person before its first turn: this one.
    pending.dataset.claim = "any";
    for await (const event of lines(response)) {
      if (event.type === "conversation-created") {
        view = freshView(event.conversation_id);
        el.service.disabled = true;
        remember(event.conversation_id);
        starting = false;
      }
      show(event, pending);
    }
    starting = false;
    if (view.id) open(view.id);
  }

  // The stream names this interaction's own message `user-message-available`: its id is
  // what the pending item is matched by (two identical lines sent quickly stay two).
  async function interact(id, text, pending) {
    const path = `v1/chat/conversations/${id}/interact`;
    const response = await call("POST", path, { json: { text } });
    for await (const event of lines(response)) {
      if (event.type === "user-message-available" && event.message) {
        pending.dataset.claim = String(event.message.id);
      }
      show(event, pending);
    }
  }

  function forget() {
    if (live) live.abort();
    live = null;
    localStorage.removeItem(STORE.chat);
    view = freshView(null);
    el.transcript.replaceChildren();
    el.hint.hidden = false;
    el.ended.hidden = true;
    el.composer.hidden = false;
    el.service.disabled = false;
    setReplying(0);
  }

  // --- start-up ---

  function askForKey(problem) {
    if (live) live.abort();
    sessionStorage.removeItem(STORE.key);
    el.keyForm.hidden = false;
    el.chat.hidden = el.composer.hidden = el.controls.hidden = el.footer.hidden = true;
    el.keyProblem.hidden = !problem;
    el.keyProblem.textContent = problem || "";
    el.key.focus();
  }

  async function connect() {
    let services;
    try {
      services = await (await call("GET", "v1/services")).json();
    } catch (error) {
      if (error.status !== 401) askForKey(`Could not reach Dormouse: ${error.message}`);
      return;
    }
    const chat = stored();
    const preferred = (chat && chat.service) || (services.find((s) => s.default) || {}).name;
    el.service.replaceChildren(...services.map((s) => {
      // The service, never the agent's model or its address: customers may see this page.
      const option = new Option(s.name, s.name);
      option.selected = s.name === preferred;
      return option;
    }));
    el.keyForm.hidden = true;
    el.chat.hidden = el.composer.hidden = el.controls.hidden = el.footer.hidden = false;
    el.user.textContent = userId();
    if (chat && chat.id) open(chat.id);
    el.text.focus();
  }

  el.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(STORE.key, el.key.value.trim());
    el.key.value = "";
    connect();
  });

  el.forget.addEventListener("click", () => askForKey(""));
  el.restart.addEventListener("click", () => {
    forget();
    el.text.focus();
  });

  el.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = el.text.value.trim();
    if (!text || view.ended || starting) return;
    el.text.value = "";
    grow();
    say(text);
  });

  // Enter sends; Shift+Enter starts a new line (and an IME's Enter picks its candidate).
  el.text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      el.composer.requestSubmit();
    }
  });

  function grow() {
    el.text.style.height = "auto";
    el.text.style.height = Math.min(el.text.scrollHeight, 160) + "px";
  }
  el.text.addEventListener("input", grow);

  // A #key= pasted into a tab that is already open connects with it too.
  window.addEventListener("hashchange", () => {
    if (takeKeyFromFragment()) connect();
  });

  takeKeyFromFragment();
  if (sessionStorage.getItem(STORE.key)) connect();
  else askForKey("");
})();
