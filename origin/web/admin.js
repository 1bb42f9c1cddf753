// The admin page: the token (sessionStorage), an upload with a progress bar (XMLHttpRequest, since fetch
// reports no upload progress), then the title's packaging followed live, and the list of every title.
"use strict";

(() => {
  const TOKEN_KEY = "surge.adminToken";
  const JOB_POLL_MS = 500;
  const LIST_POLL_MS = 2000;
  const $ = (id) => document.getElementById(id);
  const login = $("login"), signedIn = $("signed-in"), tokenInput = $("token"), tokenError = $("token-error");
  const uploadForm = $("upload-form"), fileInput = $("file"), nameInput = $("name");
  const uploadButton = $("upload-button"), cancelButton = $("cancel-upload");
  const job = $("job"), jobTitle = $("job-title"), jobError = $("job-error");
  const uploadProgress = $("upload-progress"), uploadStatus = $("upload-status");
  const jobProgress = $("job-progress"), jobStatus = $("job-status");
  const tbody = document.querySelector("#titles tbody"), titlesEmpty = $("titles-empty");
  const titlesError = $("titles-error");
  let listTimer = null, jobTimer = null, upload = null, shownList = null;

  class SignedOut extends Error {}

  // A JSON admin call; 401/403 sign out with the origin's message.
  async function api(method, path) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) throw new SignedOut("no token");
    const response = await fetch(path, { method, cache: "no-store", headers: { Authorization: `Bearer ${token}` } });
    const text = await response.text();
    if (response.status === 401 || response.status === 403) {
      signOut(surge.errorMessage(response.status, text));
      throw new SignedOut("signed out");
    }
    if (!response.ok) throw new Error(surge.errorMessage(response.status, text));
    return text ? JSON.parse(text) : null;
  }

  function setError(node, text) {
    node.textContent = text;
    node.hidden = !text;
  }

  function signIn() {
    login.hidden = true;
    signedIn.hidden = false;
    refreshList();
    clearInterval(listTimer);
    listTimer = setInterval(() => { if (!document.hidden) refreshList(); }, LIST_POLL_MS);
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    clearInterval(listTimer);
    clearTimeout(jobTimer);
    if (upload) upload.abort();
    shownList = null;
    signedIn.hidden = true;
    login.hidden = false;
    setError(tokenError, message || "");
    tokenInput.focus();
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, tokenInput.value.trim());
    tokenInput.value = "";
    setError(tokenError, "");
    signIn(); // the first list call checks the token and signs out again if it is wrong
  });
  $("sign-out").addEventListener("click", () => signOut(""));

  // --- upload -------------------------------------------------------------------------------------

  uploadForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = fileInput.files[0];
    if (!file || upload) return;
    const form = new FormData();
    const name = nameInput.value.trim();
    if (name) form.append("name", name);
    form.append("file", file, file.name);

    clearTimeout(jobTimer);
    job.hidden = false;
    jobTitle.textContent = name || file.name;
    setError(jobError, "");
    uploadProgress.value = 0;
    uploadStatus.textContent = `Uploading 0% of ${surge.bytes(file.size)}`;
    showJob({ status: "", progress: 0 }, "");
    uploadButton.disabled = true;
    cancelButton.hidden = false;

    const request = upload = new XMLHttpRequest();
    request.open("POST", "/admin/titles");
    request.setRequestHeader("Authorization", `Bearer ${sessionStorage.getItem(TOKEN_KEY)}`);
    request.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      uploadProgress.value = e.loaded / e.total;
      uploadStatus.textContent = `Uploading ${surge.percent(e.loaded / e.total)} ` +
        `(${surge.bytes(e.loaded)} of ${surge.bytes(e.total)})`;
    });
    request.addEventListener("load", () => {
      if (request.status === 202) {
        const title = JSON.parse(request.responseText);
        uploadProgress.value = 1;
        uploadStatus.textContent = `Uploaded ${surge.bytes(file.size)}`;
        jobTitle.textContent = `${title.name} (${title.id})`;
        uploadForm.reset();
        follow(title.id);
        refreshList();
        return;
      }
      const message = surge.errorMessage(request.status, request.responseText);
      uploadStatus.textContent = `Upload failed (HTTP ${request.status})`;
      setError(jobError, message);
      if (request.status === 401 || request.status === 403) signOut(message);
    });
    request.addEventListener("error", () => {
      uploadStatus.textContent = "Upload failed";
      setError(jobError, "The connection to the origin broke during the upload " +
        "(the origin may have refused the file early, e.g. over its size limit).");
    });
    request.addEventListener("abort", () => {
      uploadStatus.textContent = "Upload cancelled";
    });
    request.addEventListener("loadend", () => {
      upload = null;
      uploadButton.disabled = false;
      cancelButton.hidden = true;
    });
    request.send(form);
  });
  cancelButton.addEventListener("click", () => { if (upload) upload.abort(); });

  // --- packaging of the uploaded title ------------------------------------------------------------

  function showJob(title, text) {
    jobProgress.value = title.progress || 0;
    jobStatus.textContent = text;
    jobStatus.dataset.status = title.status;
  }

  function describe(title) {
    switch (title.status) {
      case "queued": return "Queued: waiting for a packaging slot";
      case "packaging": return `Packaging ${surge.percent(title.progress)}${title.worker ? ` on ${title.worker}` : ""}`;
      case "ready": return "Ready";
      case "failed": return "Failed";
      default: return title.status;
    }
  }

  async function follow(id) {
    let title;
    try {
      title = await api("GET", `/admin/titles/${encodeURIComponent(id)}`);
    } catch (err) {
      if (err instanceof SignedOut) return;
      setError(jobError, `Could not read the title's status: ${err.message}; retrying…`);
      jobTimer = setTimeout(() => follow(id), JOB_POLL_MS * 4);
      return;
    }
    setError(jobError, title.status === "failed" ? title.error || "packaging failed" : "");
    showJob(title, describe(title));
    if (title.status === "ready") {
      jobStatus.append(" · ", surge.el("a", { href: `/#${encodeURIComponent(id)}`, text: "play it" }));
      refreshList();
    } else if (title.status === "failed") {
      refreshList();
    } else {
      jobTimer = setTimeout(() => follow(id), JOB_POLL_MS);
    }
  }

  // --- all titles ---------------------------------------------------------------------------------

  async function refreshList() {
    let titles;
    try {
      titles = (await api("GET", "/admin/titles")).titles;
    } catch (err) {
      if (!(err instanceof SignedOut)) setError(titlesError, `Could not list the titles: ${err.message}`);
      return;
    }
    setError(titlesError, "");
    const key = JSON.stringify(titles);
    if (key === shownList) return; // re-rendering would eat a click on a button under the pointer
    shownList = key;
    tbody.replaceChildren(...titles.map(row));
    titlesEmpty.hidden = titles.length > 0;
  }

  function row(title) {
    const status = surge.el("td", {},
      surge.el("span", { class: `status status-${title.status}`, text: title.status }));
    if (title.error) status.append(surge.el("div", { class: "error", text: title.error }));
    if (title.worker) status.append(surge.el("div", { class: "muted", text: `worker ${title.worker}` }));
    const actions = surge.el("td", { class: "actions" });
    if (title.status === "ready") {
      actions.append(surge.el("a", { href: `/#${encodeURIComponent(title.id)}`, text: "Play" }), " ");
    }
    actions.append(surge.el("button", { type: "button", class: "delete small", onclick: () => remove(title),
      text: "Delete" }));
    return surge.el("tr", { "data-id": title.id, "data-status": title.status },
      surge.el("td", {}, surge.el("div", { text: title.name }), surge.el("code", { class: "muted", text: title.id })),
      status,
      title.progress === null ? surge.el("td", { text: "—" })  // a failed title has no progress
        : surge.el("td", {}, surge.el("progress", { max: "1", value: String(title.progress) }),
          ` ${surge.percent(title.progress)}`),
      surge.el("td", { text: surge.duration(title.duration) }),
      surge.el("td", { text: new Date(title.created).toLocaleString() }),
      actions);
  }

  async function remove(title) {
    if (!confirm(`Delete “${title.name}”? Its packaged files and its source are removed.`)) return;
    try {
      await api("DELETE", `/admin/titles/${encodeURIComponent(title.id)}`);
    } catch (err) {
      if (!(err instanceof SignedOut)) setError(titlesError, `Could not delete ${title.id}: ${err.message}`);
      return;
    }
    refreshList();
  }

  if (sessionStorage.getItem(TOKEN_KEY)) signIn(); else signOut("");
})();
