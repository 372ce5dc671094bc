// The console's few live parts: refresh a region when its conversation changes (the
// conversation's event stream) or every few seconds (the inbox), and ask before the
// irreversible. Everything works without it; it only saves a reload.
"use strict";

function swap(url, targetId) {
  const box = document.getElementById(targetId);
  if (!box) return Promise.resolve();
  return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
    .then((r) => {
      if (r.redirected || !r.ok) return null;  // signed out or gone: leave the page as it is
      return r.text();
    })
    .then((html) => {
      if (html === null) return;
      const text = document.getElementById("reply-text");
      const draft = text ? text.value : "";
      const focused = document.activeElement && document.activeElement.id === "reply-text";
      const atEnd = window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
      box.innerHTML = html;
      if (atEnd) toEnd();  // following along: keep the newest message in view
      const again = document.getElementById("reply-text");
      if (again && draft) again.value = draft;  // a refresh never eats what is being typed
      if (again && focused) again.focus();
    })
    .catch(() => {});
}

function toEnd() {
  const transcript = document.getElementById("transcript");
  if (transcript && transcript.lastElementChild) {
    transcript.lastElementChild.scrollIntoView({ block: "end" });
    window.scrollBy(0, 200);  // past the sticky reply box, which covers the page's foot
  }
}

function live() {
  toEnd();  // a conversation opens on its newest message, as chat tools do
  const region = document.querySelector("[data-refresh]");
  if (!region) return;
  const url = region.dataset.refresh;
  const target = region.dataset.refreshTarget;
  if (region.dataset.events && window.EventSource) {
    let pending = null;
    const source = new EventSource(region.dataset.events);
    source.addEventListener("changed", () => {
      clearTimeout(pending);  // a burst of events (a turn's messages) is one refresh
      pending = setTimeout(() => swap(url, target), 150);
    });
    return;
  }
  setInterval(() => {
    if (!document.hidden) swap(url, target);
  }, 10000);
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

document.addEventListener("keydown", (event) => {
  // Ctrl/Cmd+Enter sends a reply, as in most chat tools; Enter alone is a new line.
  if (event.target.id === "reply-text" && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    event.target.form.requestSubmit();
  }
});

document.addEventListener("DOMContentLoaded", live);
