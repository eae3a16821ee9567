/* Campaign page: the form <-> the campaign's JSON definition, the SMS length of each message as it will
   leave (asked of the server, which uses the campaigns package), the weekly window grid, dry runs. */
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("campaign-form");
  const existing = JSON.parse($("campaign-data").textContent || "{}");
  const def = existing.definition || null;
  const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
  const split = (s) => s.split(/[;,]/).map((x) => x.trim()).filter(Boolean);
  const hours = (s) => Math.round(parseFloat(s || "0") * 3600);
  const local = (iso) => (iso ? iso.replace(/(Z|[+-]\d\d:\d\d)$/, "").slice(0, 16) : "");

  function fill(d) {
    $("c-id").value = d.id || existing.id || "";
    $("c-name").value = d.name || "";
    $("c-status").value = existing.status || d.status || "draft";
    $("c-priority").value = d.priority ?? 0;
    $("c-channel").value = d.channel || "push";
    $("c-starts").value = local(d.starts_at); $("c-ends").value = local(d.ends_at);
    $("c-zones").value = (d.trigger?.zone_ids || []).join("; ");
    $("c-tags").value = (d.trigger?.zone_tags || []).join("; ");
    document.querySelectorAll(".c-kind").forEach((c) => { c.checked = (d.trigger?.kinds || ["enter"]).includes(c.value); });
    $("c-audience").value = (d.audience?.all || []).map((c) => `${c.attribute} ${c.op} ${Array.isArray(c.value) ? c.value.join(",") : c.value ?? ""}`.trim()).join("\n");
    $("c-advertiser").value = d.advertiser || ""; $("c-sender").value = d.sender || "";
    $("c-default-locale").value = d.default_locale || "fr";
    for (const [loc, tpl] of Object.entries(d.templates || {})) {
      if (!$(`c-body-${loc}`)) continue;
      $(`c-title-${loc}`).value = tpl.title || ""; $(`c-body-${loc}`).value = tpl.body || "";
    }
    (d.windows || []).forEach((w) => {
      const sh = parseInt(w.start.slice(0, 2));
      const eh = parseInt(w.end.slice(0, 2)) + (w.end.slice(3) !== "00" ? 1 : 0);
      w.days.forEach((day) => {
        const next = DAYS[(DAYS.indexOf(day) + 1) % 7];
        if (eh > sh) for (let h = sh; h < eh; h++) slot(day, h).checked = true;
        else { for (let h = sh; h < 24; h++) slot(day, h).checked = true; for (let h = 0; h < eh; h++) slot(next, h).checked = true; }
      });
    });
    $("c-oow").value = d.out_of_window?.mode || "drop"; $("c-oow-delay").value = d.out_of_window?.max_delay_s ?? 0;
    $("c-cooldown").value = (d.caps?.cooldown_s ?? 86400) / 3600; $("c-zone-cooldown").value = (d.caps?.zone_cooldown_s ?? 21600) / 3600;
    $("c-one-per-visit").checked = d.caps?.one_per_visit ?? true;
    $("c-holdout").value = d.holdout_share ?? 0; $("c-ttl").value = d.offer_ttl_s ?? 10800;
    $("c-quiet").value = d.push_quiet_hours ? `${d.push_quiet_hours.start}-${d.push_quiet_hours.end}` : "";
    $("c-near-exit").value = d.near_exit_s ?? 900; $("c-near-m").value = d.near_m ?? 500;
  }

  const slot = (day, hour) => document.querySelector(`input.slot[data-day="${day}"][data-hour="${hour}"]`);

  function windows() {
    const out = [];
    DAYS.forEach((day) => {
      let start = null;
      for (let h = 0; h <= 24; h++) {
        const on = h < 24 && slot(day, h).checked;
        if (on && start === null) start = h;
        if (!on && start !== null) { out.push({ days: [day], start: `${String(start).padStart(2, "0")}:00`, end: h === 24 ? "24:00" : `${String(h).padStart(2, "0")}:00` }); start = null; }
      }
    });
    return out;
  }

  function audience() {
    return $("c-audience").value.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
      const [attribute, op = "eq", ...rest] = line.split(/\s+/);
      let value = rest.join(" ");
      if (op === "in" || op === "not_in") value = value.split(",").map((s) => s.trim());
      else if (value !== "" && !isNaN(Number(value))) value = Number(value);
      else if (value === "") value = null;
      return { attribute, op, value };
    });
  }

  function definition() {
    const templates = {};
    document.querySelectorAll(".template").forEach((t) => {
      const loc = t.dataset.locale, body = $(`c-body-${loc}`).value.trim(), title = $(`c-title-${loc}`).value.trim();
      if (body) templates[loc] = title ? { title, body } : { body };
    });
    const d = {
      name: $("c-name").value.trim(), status: $("c-status").value, priority: parseInt($("c-priority").value || "0"),
      channel: $("c-channel").value, default_locale: $("c-default-locale").value.trim() || "fr",
      trigger: { zone_ids: split($("c-zones").value), zone_tags: split($("c-tags").value), kinds: [...document.querySelectorAll(".c-kind:checked")].map((c) => c.value) },
      audience: { all: audience() }, templates, windows: windows(),
      out_of_window: { mode: $("c-oow").value, max_delay_s: parseInt($("c-oow-delay").value || "0") },
      caps: { cooldown_s: hours($("c-cooldown").value), zone_cooldown_s: hours($("c-zone-cooldown").value), one_per_visit: $("c-one-per-visit").checked },
      holdout_share: parseFloat($("c-holdout").value || "0"), offer_ttl_s: parseInt($("c-ttl").value || "10800"),
      near_exit_s: parseInt($("c-near-exit").value || "0"), near_m: parseFloat($("c-near-m").value || "0"),
    };
    if ($("c-id").value.trim()) d.id = $("c-id").value.trim();
    if ($("c-advertiser").value.trim()) d.advertiser = $("c-advertiser").value.trim();
    if ($("c-sender").value.trim()) d.sender = $("c-sender").value.trim();
    if ($("c-starts").value) d.starts_at = `${$("c-starts").value}:00Z`;
    if ($("c-ends").value) d.ends_at = `${$("c-ends").value}:00Z`;
    const quiet = $("c-quiet").value.trim().split("-");
    if (quiet.length === 2) d.push_quiet_hours = { start: quiet[0].trim(), end: quiet[1].trim() };
    return d;
  }

  /* The chosen hours that the law forbids for SMS are outlined in red and named. */
  function checkGrid() {
    const sms = $("c-channel").value !== "push";
    const bad = [];
    document.querySelectorAll("#window-grid td.h").forEach((td) => {
      const on = td.querySelector("input").checked;
      td.classList.toggle("chosen", on);
      if (on && sms && td.dataset.state !== "allowed") bad.push(`${td.dataset.day} ${String(td.dataset.hour).padStart(2, "0")}h`);
    });
    const fr = document.body.dataset.lang === "fr";
    $("window-warning").textContent = bad.length ? `${fr ? "Heures interdites pour les SMS" : "Hours forbidden for SMS"}: ${bad.join(", ")}` : "";
  }

  let timer = null;
  function smsLength() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const sms = $("c-channel").value !== "push";
      for (const t of document.querySelectorAll(".template")) {
        const loc = t.dataset.locale, out = $(`c-sms-${loc}`), body = $(`c-body-${loc}`).value;
        if (!sms || !body.trim()) { out.textContent = ""; continue; }
        const r = await Console.api("POST", `${Console.prefix}/sms-preview`, { body, locale: loc, advertiser: $("c-advertiser").value, sender: $("c-sender").value });
        if (!r.ok) { out.textContent = Console.detail(r.data); continue; }
        const d = r.data;
        out.innerHTML = `<strong>${d.encoding}</strong> · ${d.length} · <strong>${d.segments}</strong> ${document.body.dataset.lang === "fr" ? "segment(s)" : "segment(s)"}${d.mention ? ` · « ${Console.esc(d.mention)} »` : ""}${d.problem ? `<br><span class="error">${Console.esc(d.problem)}</span>` : ""}<br><small>${Console.esc(d.text)}</small>`;
      }
    }, 250);
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    // the last save's answer goes while this one is under way: a "saved" left on screen would claim it done
    $("campaign-status").innerHTML = "";
    const id = form.dataset.id;
    const d = definition();
    const r = await Console.api(id ? "PUT" : "POST", id ? `campaigns/${encodeURIComponent(id)}` : "campaigns", d);
    if (r.ok && id && existing.status && d.status !== existing.status) {
      const s = await Console.api("POST", `campaigns/${encodeURIComponent(id)}/status`, { status: d.status });
      if (!s.ok) { $("campaign-status").innerHTML = `<p class="error">${s.status}: ${Console.esc(Console.detail(s.data))}</p>`; return; }
      existing.status = d.status;
    }
    if (!r.ok) { $("campaign-status").innerHTML = `<p class="error" id="campaign-error">${r.status}: ${Console.esc(Console.detail(r.data))}</p>`; return; }
    const warnings = (r.data.warnings || []).map((w) => `<li>${Console.esc(w)}</li>`).join("");
    $("campaign-status").innerHTML = `<p id="campaign-saved">✓ ${Console.esc(r.data.id)}</p>${warnings ? `<ul>${warnings}</ul>` : ""}`;
    if (!id) setTimeout(() => { location.href = `${Console.prefix}/campaigns/${encodeURIComponent(r.data.id)}`; }, 600);
  });

  function report(r) {
    const out = $("dry-run-result");
    if (!r.ok) { out.innerHTML = `<p class="error">${r.status}: ${Console.esc(Console.detail(r.data))}</p>`; return; }
    const d = r.data;
    const rows = d.rows.map((x) => `<tr><td>${Console.esc(x.event_at)}</td><td>${Console.esc(x.zone_id)}</td><td>${Console.esc(x.device_id)}</td><td>${Console.esc(x.customer_id)}</td><td class="outcome">${Console.esc(x.outcome)}</td><td class="reason">${Console.esc(x.reason)}</td><td>${Console.esc(x.body || "")}</td></tr>`).join("");
    const counts = Object.entries(d.outcomes).map(([k, n]) => `${Console.esc(k)}: ${n}`).join(" · ");
    const reasons = Object.entries(d.skip_reasons || {}).map(([k, n]) => `${Console.esc(k)} ${n}`).join(", ");
    out.innerHTML = `<p id="dry-run-summary">${d.events} ⟶ ${counts}${reasons ? ` (${reasons})` : ""}${d.trace_events !== undefined ? ` · GPX: ${d.trace_events}` : ""}</p>` +
      ((d.trace_problems || []).length ? `<p class="hint">${d.trace_problems.map(Console.esc).join("<br>")}</p>` : "") +
      `<table id="dry-run-rows"><caption>${Console.esc(document.getElementById("dry-run-title").textContent)}</caption><thead><tr><th scope="col">at</th><th scope="col">zone</th><th scope="col">device</th><th scope="col">customer</th><th scope="col">decision</th><th scope="col">reason</th><th scope="col">message</th></tr></thead><tbody>${rows}</tbody></table>`;
  }
  $("dry-run-recorded")?.addEventListener("click", async () => report(await Console.api("POST", `campaigns/${encodeURIComponent(form.dataset.id)}/dry-run`, {})));
  $("dry-run-trace")?.addEventListener("submit", async (e) => {
    e.preventDefault();
    const file = $("trace-file").files[0];
    if (!file) return;
    const data = new FormData();
    data.append("trace", file);
    if ($("trace-device").value.trim()) data.append("device_id", $("trace-device").value.trim());
    const response = await fetch(`${Console.prefix}/campaigns/${encodeURIComponent(form.dataset.id)}/trace-dry-run`, { method: "POST", body: data, headers: { "X-CSRF-Token": Console.csrf() }, credentials: "same-origin" });
    let body = null; try { body = await response.json(); } catch (err) { body = null; }
    report({ ok: response.ok, status: response.status, data: body });
  });

  if (def) fill({ ...def, id: existing.id });
  form.addEventListener("input", (e) => { if (e.target.matches("textarea[id^=c-body], #c-advertiser, #c-sender, #c-channel")) smsLength(); checkGrid(); });
  form.addEventListener("change", () => { checkGrid(); smsLength(); });
  checkGrid(); smsLength();
  document.body.dataset.ready = "campaign";
})();
