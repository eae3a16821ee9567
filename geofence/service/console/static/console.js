/* Shared helpers of the console's pages: the CSRF header, JSON calls, the language switch. */
"use strict";
const Console = (() => {
  const prefix = "/console";
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
  async function api(method, path, body, contentType) {
    const init = { method, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = contentType || "application/json";
      init.body = contentType ? body : JSON.stringify(body);
    }
    const response = await fetch(path.startsWith("/") ? path : `${prefix}/api/v1/${path}`, init);
    let data = null;
    const text = await response.text();
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
    return { ok: response.ok, status: response.status, data };
  }
  function esc(value) {
    return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  function detail(data) {
    if (!data) return "";
    if (typeof data === "string") return data;
    const d = data.detail ?? data;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
    if (d.reasons) return d.reasons.join("; ");
    return JSON.stringify(d);
  }
  document.querySelectorAll("button.lang").forEach((b) => b.addEventListener("click", () => {
    document.cookie = `geofence_console_lang=${b.dataset.lang}; path=/console; SameSite=Strict; max-age=31536000`;
    location.reload();
  }));
  return { prefix, csrf, api, esc, detail };
})();
