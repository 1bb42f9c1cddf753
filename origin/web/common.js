// Helpers shared by the player and admin pages. Plain browser JS, no build step.
"use strict";

const surge = {
  // Builds an element; text goes through textContent, never innerHTML (titles are user input).
  el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value);
    }
    node.append(...children);
    return node;
  },

  duration(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds)) return "";
    const total = Math.round(seconds);
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    const mmss = `${String(m).padStart(h ? 2 : 1, "0")}:${String(s).padStart(2, "0")}`;
    return h ? `${h}:${mmss}` : mmss;
  },

  bytes(count) {
    const units = ["B", "kB", "MB", "GB", "TB"];
    let value = count, unit = 0;
    while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
    return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
  },

  percent(fraction) {
    return `${Math.floor(Math.max(0, Math.min(1, fraction)) * 100)}%`;
  },

  // The message of an error response: surge answers {"error": "..."}; anything else gets its status.
  errorMessage(status, text) {
    try {
      const body = JSON.parse(text);
      if (body && typeof body.error === "string") return body.error;
    } catch (_) { /* not JSON: a proxy's page, say */ }
    return status ? `HTTP ${status}` : "network error: the origin could not be reached";
  },
};
