// Attachments in the chat widget and the dashboard (ADR 0022): upload a file as a message, and show
// a message's files — a thumbnail for images, a download button for everything else. Files are
// fetched with the page's bearer token and shown from blob: URLs; nothing is rendered as HTML.
(function () {
  "use strict";

  /** `bytes` for people: 812 B, 14 KB, 3.2 MB. */
  function sizeText(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
    return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
  }

  const blobs = new Map(); // url → Promise<blob: URL>, so a re-rendered message does not fetch again

  async function fetchBlob(options, path) {
    const response = await fetch(options.baseUrl + path, { headers: { Authorization: `Bearer ${options.token()}` } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return response.blob();
  }

  function blobUrl(options, path) {
    if (!blobs.has(path)) {
      const made = fetchBlob(options, path).then((blob) => URL.createObjectURL(blob));
      made.catch(() => blobs.delete(path));
      blobs.set(path, made);
    }
    return blobs.get(path);
  }

  /** Saves the file at `path` under `name` (the browser's download). */
  async function download(options, path, name) {
    const link = document.createElement("a");
    link.href = await blobUrl(options, path);
    link.download = name;
    link.rel = "noopener";
    document.body.appendChild(link);
    link.click();
    link.remove();
  }

  /**
   * Appends the files of a message to `container`. `options`: `baseUrl` (the API's origin, "" for
   * this one), `token()` (the bearer token), `labels.download` (a verb, "Download").
   */
  function render(container, attachments, options) {
    if (!attachments || attachments.length === 0) return;
    const list = document.createElement("span");
    list.className = "files";
    for (const file of attachments) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = file.thumbnail_url ? "file image" : "file";
      button.dataset.sha256 = file.sha256;
      const label = `${options.labels.download} ${file.file_name} (${sizeText(file.size)})`;
      button.title = label;
      if (file.thumbnail_url) {
        button.setAttribute("aria-label", label);
        const img = document.createElement("img");
        img.alt = file.file_name;
        img.className = "thumbnail";
        blobUrl(options, file.thumbnail_url)
          .then((url) => {
            img.src = url;
          })
          .catch(() => {
            img.replaceWith(document.createTextNode(file.file_name));
          });
        button.appendChild(img);
      } else {
        // The visible name and size, read after the verb ("Download invoice.pdf 14 KB").
        const verb = document.createElement("span");
        verb.className = "visually-hidden";
        verb.textContent = `${options.labels.download} `;
        const name = document.createElement("span");
        name.className = "file-name";
        name.textContent = file.file_name; // text, never HTML
        const size = document.createElement("span");
        size.className = "file-size";
        size.textContent = ` ${sizeText(file.size)}`;
        button.append(verb, name, size);
      }
      button.addEventListener("click", () => {
        download(options, file.url, file.file_name).catch((e) => console.warn("netia: download failed", e));
      });
      list.appendChild(button);
    }
    container.appendChild(list);
  }

  /**
   * Uploads `file` into conversation `conversationId` as a message (`extra`: `body` caption,
   * `private` for agents' notes) and resolves to the saved message; rejects with the server's
   * message (too large, not allowed, …).
   */
  async function upload(options, conversationId, file, extra) {
    const query = new URLSearchParams({ file_name: file.name || "file" });
    for (const [key, value] of Object.entries(extra || {})) {
      if (value !== undefined && value !== "" && value !== false) query.set(key, String(value));
    }
    const response = await fetch(`${options.baseUrl}/api/conversations/${conversationId}/attachments?${query}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${options.token()}`, "Content-Type": "application/octet-stream", Accept: "application/json" },
      body: file,
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((data && data.message) || `HTTP ${response.status}`);
    return data.data;
  }

  window.NetiaFiles = { render, upload, sizeText };
})();
