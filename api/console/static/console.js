// ja3svc console: the one script. Every page works without it (live mode then reloads through
// <noscript><meta refresh>); with it, the live Decisions list reloads only while nobody is
// typing in its filter form.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const meta = document.querySelector('meta[name="ja3svc-refresh"]');
  if (!meta) return;
  const seconds = Math.max(1, Number(meta.content) || 5);
  const form = document.querySelector("form.filters");
  const tick = () => {
    if (form && form.contains(document.activeElement)) {
      setTimeout(tick, seconds * 1000);
    } else {
      window.location.reload();
    }
  };
  setTimeout(tick, seconds * 1000);
});
