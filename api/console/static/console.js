// The console's few live parts: refresh a region when its conversation changes (the
// conversation's event stream) or every few seconds (the inbox), and ask before the
// irreversible. Everything works without it; it only saves a reload.
"use strict";

function swap(url, targetIds) {
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
      // A fragment of several regions names each by its id; one of a single region is its
      // content. Every panel that shows the conversation changes with it, not only the transcript.
      const fresh = new DOMParser().parseFromString(html, "text/html");
      for (const id of targetIds) {
        const box = document.getElementById(id);
        const part = fresh.getElementById(id);
        if (box) box.innerHTML = part ? part.innerHTML : html;
      }
      localTimes(document);
      if (atEnd) toEnd();  // following along: keep the newest message in view
      const again = document.getElementById("reply-text");
      if (again && draft) again.value = draft;  // a refresh never eats what is being typed
      if (again && focused) again.focus();
    })
    .catch(() => {});
}

// One rule for times, here and on the chat page: the viewer's own time zone, named. The
// server writes UTC (said so) for a page read without script.
const FORMATS = {
  full: { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", timeZoneName: "short" },
  short: { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" },
};

function localTimes(root) {
  for (const el of root.querySelectorAll("time[data-local]")) {
    const at = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(at.getTime())) continue;
    el.title = at.toLocaleString([], FORMATS.full);
    const style = FORMATS[el.dataset.local];
    if (style) el.textContent = at.toLocaleString([], style);
  }
}

function toEnd() {
  const transcript = document.getElementById("transcript");
  if (transcript && transcript.lastElementChild) {
    transcript.lastElementChild.scrollIntoView({ block: "end" });
    window.scrollBy(0, 200);  // past the sticky reply box, which covers the page's foot
  }
}

function live() {
  localTimes(document);
  toEnd();  // a conversation opens on its newest message, as chat tools do
  const region = document.querySelector("[data-refresh]");
  if (!region) return;
  const url = region.dataset.refresh;
  const targets = region.dataset.refreshTarget.split(" ");
  if (region.dataset.events && window.EventSource) {
    let pending = null;
    const source = new EventSource(region.dataset.events);
    source.addEventListener("changed", () => {
      clearTimeout(pending);  // a burst of events (a turn's messages) is one refresh
      pending = setTimeout(() => swap(url, targets), 150);
    });
    return;
  }
  setInterval(() => {
    if (!document.hidden) swap(url, targets);
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
