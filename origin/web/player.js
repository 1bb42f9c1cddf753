// The player page: the catalog from GET /titles, playback with hls.js (or native HLS where the browser
// has it, as Safari does), the current level, and buttons that force one. `window.hls` is the live
// hls.js instance, for debugging and for tests.
"use strict";

(() => {
  const video = document.getElementById("video");
  const list = document.getElementById("titles");
  const catalogStatus = document.getElementById("catalog-status");
  const notice = document.getElementById("notice");
  const nowTitle = document.getElementById("now-title");
  const levelOut = document.getElementById("level");
  const resolutionOut = document.getElementById("resolution");
  const levelButtons = document.getElementById("levels");
  const hlsJs = typeof window.Hls === "function" && window.Hls.isSupported();
  const nativeHls = video.canPlayType("application/vnd.apple.mpegurl") !== "";
  let hls = null;
  let titles = [];

  // Shown whenever nothing more pressing is: the page without hls.js still works where the browser
  // plays HLS itself (Safari, recent Chrome), but without the level buttons.
  const setupNotice = typeof window.Hls === "function" ? "" :
    "hls.js is not installed on this origin (origin/web/vendor/hls.min.js is missing): run `make setup` " +
    "in the surge checkout and reload this page (the origin needs no restart)." +
    (nativeHls ? " Meanwhile this browser plays the titles with its own HLS support, without level choice." : "");

  function showNotice(text) {
    notice.textContent = text || setupNotice;
    notice.hidden = !notice.textContent;
  }

  async function loadCatalog() {
    catalogStatus.textContent = "Loading the catalog…";
    catalogStatus.className = "muted";
    try {
      const response = await fetch("/titles", { cache: "no-store" });
      const text = await response.text();
      if (!response.ok) throw new Error(surge.errorMessage(response.status, text));
      titles = JSON.parse(text).titles;
    } catch (err) {
      catalogStatus.textContent = `Could not load the catalog: ${err.message}`;
      catalogStatus.className = "error";
      return;
    }
    list.replaceChildren(...titles.map((title) => surge.el("li", {},
      surge.el("button", { type: "button", class: "title", "data-id": title.id, onclick: () => choose(title) },
        surge.el("span", { class: "name", text: title.name }),
        surge.el("span", { class: "muted", text: surge.duration(title.duration) })))));
    if (titles.length === 0) {
      catalogStatus.replaceChildren("No titles yet: upload one on the ",
        surge.el("a", { href: "/admin/", text: "admin page" }), ".");
    } else {
      catalogStatus.textContent = `${titles.length} title${titles.length === 1 ? "" : "s"}`;
    }
    markChosen();
    const wanted = decodeURIComponent(location.hash.slice(1));
    const title = titles.find((t) => t.id === wanted);
    if (title && nowTitle.dataset.id !== title.id) choose(title);
  }

  function markChosen() {
    for (const button of list.querySelectorAll("button.title")) {
      button.setAttribute("aria-pressed", String(button.dataset.id === nowTitle.dataset.id));
    }
  }

  function stop() {
    if (hls) {
      hls.destroy();
      hls = window.hls = null;
    }
    video.removeAttribute("src");
    video.load();
    levelButtons.replaceChildren();
    levelOut.textContent = resolutionOut.textContent = "—";
    levelOut.dataset.height = "";
  }

  function choose(title) {
    stop();
    nowTitle.textContent = title.name;
    nowTitle.dataset.id = title.id;
    history.replaceState(null, "", `#${encodeURIComponent(title.id)}`);
    markChosen();
    showNotice("");
    video.muted = true; // browsers autoplay only muted video; the controls unmute
    if (hlsJs) {
      playWithHlsJs(title.master);
    } else if (nativeHls) {
      video.src = title.master;
      levelOut.textContent = "chosen by the browser";
      video.play().catch(() => { /* autoplay refused: the controls start it */ });
    } else {
      showNotice(setupNotice || "This browser cannot play HLS: it has neither Media Source Extensions nor native HLS.");
    }
  }

  function playWithHlsJs(master) {
    let recoveries = 0;
    hls = window.hls = new window.Hls();
    hls.on(window.Hls.Events.MANIFEST_PARSED, () => {
      renderLevelButtons();
      video.play().catch(() => { /* autoplay refused: the controls start it */ });
    });
    hls.on(window.Hls.Events.LEVEL_SWITCHED, () => showLevel());
    hls.on(window.Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      // hls.js's documented recovery: reload on network errors, rebuild the media pipeline on media ones;
      // a few times only, since a deleted title would otherwise be retried forever.
      recoveries += 1;
      const network = data.type === window.Hls.ErrorTypes.NETWORK_ERROR && data.details !== "manifestLoadError";
      if (network && recoveries <= 3) {
        showNotice(`Network error (${data.details}); retrying…`);
        hls.startLoad();
      } else if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR && recoveries <= 3) {
        showNotice(`Media error (${data.details}); recovering…`);
        hls.recoverMediaError();
      } else {
        const status = data.response && data.response.code ? ` (HTTP ${data.response.code})` : "";
        showNotice(`Playback failed: ${data.details}${status}`);
        stop();
      }
    });
    hls.loadSource(master);
    hls.attachMedia(video);
  }

  function renderLevelButtons() {
    const force = (index) => () => {
      hls.currentLevel = index; // -1 is automatic; otherwise switch now, flushing the buffer
      markLevelButtons();
    };
    levelButtons.replaceChildren(
      surge.el("button", { type: "button", "data-level": "-1", onclick: force(-1), text: "Auto" }),
      ...hls.levels.map((level, index) => surge.el("button", {
        type: "button", "data-level": String(index), onclick: force(index),
        title: `${level.width}×${level.height}, ${Math.round(level.bitrate / 1000)} kb/s`,
        text: level.height ? `${level.height}p` : `${Math.round(level.bitrate / 1000)} kb/s`,
      })));
    markLevelButtons();
  }

  function markLevelButtons() {
    const chosen = hls.autoLevelEnabled ? -1 : hls.manualLevel;
    for (const button of levelButtons.querySelectorAll("button")) {
      button.setAttribute("aria-pressed", String(Number(button.dataset.level) === chosen));
    }
  }

  function showLevel() {
    const index = hls.currentLevel;
    const level = hls.levels[index];
    if (!level) return;
    const kbps = Math.round(level.bitrate / 1000);
    levelOut.textContent = `${level.height}p, ${kbps} kb/s (${index + 1} of ${hls.levels.length}` +
      `${hls.autoLevelEnabled ? ", auto" : ""})`;
    levelOut.dataset.height = String(level.height);
    levelOut.dataset.level = String(index);
    markLevelButtons();
  }

  video.addEventListener("resize", () => {
    resolutionOut.textContent = `${video.videoWidth}×${video.videoHeight}`;
  });
  window.addEventListener("hashchange", () => loadCatalog());
  document.getElementById("refresh").addEventListener("click", () => loadCatalog());
  showNotice("");
  loadCatalog();
})();
