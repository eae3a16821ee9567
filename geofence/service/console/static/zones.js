/* Zones page: every zone on the map with its label, coloured by tag; draw a circle or a polygon, place a
   store sized by travel time; edit, delete, search, import. Every change is a call to /v1/zones. */
"use strict";
(async () => {
  const $ = (id) => document.getElementById(id);
  const map = await ConsoleMap.create($("map"), $("map-note"));
  ConsoleMap.addZoneLayers(map, "zones");
  map.addSource("draft", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
  map.addLayer({ id: "draft-fill", type: "fill", source: "draft", paint: { "fill-color": "#d9480f", "fill-opacity": 0.2 } });
  map.addLayer({ id: "draft-line", type: "line", source: "draft", paint: { "line-color": "#d9480f", "line-width": 2, "line-dasharray": [2, 1] } });
  let features = [];
  let exported = {};
  let mode = null;
  let vertices = [];
  const refreshLabels = ConsoleMap.labeller(map, () => features);

  async function load(fitAll) {
    const r = await Console.api("GET", `${Console.prefix}/zones.geojson`);
    if (!r.ok) { $("zone-status").textContent = Console.detail(r.data); return; }
    exported = Object.fromEntries((r.data.features || []).map((f) => [f.id, f]));
    features = ConsoleMap.toFeatures(r.data);
    map.getSource("zones").setData({ type: "FeatureCollection", features });
    legend();
    list();
    if (fitAll) ConsoleMap.fit(map, features);
    refreshLabels();
  }

  function legend() {
    const tags = [...new Set(features.map((f) => f.properties.tag))].sort();
    $("legend").innerHTML = tags.map((t) => `<span><i style="background:${ConsoleMap.colour(t)}"></i>${Console.esc(t || "—")}</span>`).join("");
  }

  function list() {
    const q = $("zone-search").value.trim().toLowerCase();
    const hits = features.filter((f) => !q || f.properties.name.toLowerCase().includes(q)).slice(0, 100);
    $("zone-list").innerHTML = hits.map((f) => `<li><button type="button" data-id="${Console.esc(f.properties.id)}">${Console.esc(f.properties.name)}</button> <span class="tag" style="color:${f.properties.color}">${Console.esc(f.properties.tag)}</span></li>`).join("");
  }

  function setMode(next) {
    mode = mode === next ? null : next;
    vertices = [];
    document.querySelectorAll("[data-mode]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.mode === mode)));
    if (mode) clearForm(false);
    if (mode === "store" && !$("zone-sizing").value) $("zone-sizing").value = "walk:5";
    if (mode === "circle") $("zone-sizing").value = "";
    map.getCanvas().style.cursor = mode ? "crosshair" : "";
    draft();
  }

  function clearForm(all = true) {
    ["zone-id", "zone-area", "zone-lat", "zone-lng", "zone-radius"].forEach((id) => { $(id).value = ""; });
    if (all) { $("zone-name").value = ""; $("zone-tags").value = ""; $("zone-sizing").value = ""; }
    $("zone-delete").hidden = true;
    draft();
  }

  function draft() {
    const lat = parseFloat($("zone-lat").value), lng = parseFloat($("zone-lng").value), r = parseFloat($("zone-radius").value);
    let geometry = null;
    if ($("zone-area").value) geometry = JSON.parse($("zone-area").value);
    else if (vertices.length >= 2) geometry = { type: "LineString", coordinates: vertices };
    else if (isFinite(lat) && isFinite(lng) && r > 0) geometry = ConsoleMap.circle(lng, lat, r);
    else if (isFinite(lat) && isFinite(lng)) geometry = { type: "Point", coordinates: [lng, lat] };
    map.getSource("draft").setData({ type: "FeatureCollection", features: geometry ? [{ type: "Feature", geometry, properties: {} }] : [] });
  }

  map.on("click", (e) => {
    const { lng, lat } = e.lngLat;
    if (mode === "circle") {
      if (!$("zone-lat").value || $("zone-radius").value) {
        $("zone-lat").value = lat.toFixed(6); $("zone-lng").value = lng.toFixed(6); $("zone-radius").value = "";
      } else {
        const c = new maplibregl.LngLat(parseFloat($("zone-lng").value), parseFloat($("zone-lat").value));
        $("zone-radius").value = Math.max(10, Math.round(c.distanceTo(e.lngLat)));
      }
    } else if (mode === "store") {
      $("zone-lat").value = lat.toFixed(6); $("zone-lng").value = lng.toFixed(6);
    } else if (mode === "polygon") {
      const first = vertices[0];
      if (first && vertices.length >= 3 && map.project(first).dist(e.point) < 12) {
        $("zone-area").value = JSON.stringify({ type: "Polygon", coordinates: [[...vertices, first]] });
        vertices = [];
      } else {
        vertices.push([lng, lat]);
      }
    } else {
      const hit = map.queryRenderedFeatures(e.point, { layers: ["zones-fill"] })[0];
      if (hit) edit(hit.properties.id);
      return;
    }
    draft();
  });

  function edit(id) {
    const f = exported[id];
    if (!f) return;
    setMode(null);
    const p = f.properties;
    $("zone-id").value = id;
    $("zone-name").value = p.name || "";
    $("zone-tags").value = (p.tags || []).join("; ");
    $("zone-sizing").value = p.profile && p.minutes ? `${p.profile}:${p.minutes}` : "";
    if (f.geometry.type === "Point") {
      $("zone-lng").value = f.geometry.coordinates[0]; $("zone-lat").value = f.geometry.coordinates[1];
      $("zone-radius").value = p.radius_m; $("zone-area").value = "";
    } else {
      $("zone-area").value = JSON.stringify(f.geometry);
      $("zone-lat").value = $("zone-lng").value = $("zone-radius").value = "";
    }
    $("zone-delete").hidden = false;
    draft();
  }

  function body() {
    const out = { name: $("zone-name").value.trim(), tags: $("zone-tags").value.split(/[;,|]/).map((s) => s.trim()).filter(Boolean) };
    const id = $("zone-id").value;
    const previous = id && exported[id] ? exported[id].properties : {};
    for (const key of ["store_id", "tz", "country", "metadata", "fence"]) if (previous[key] != null) out[key] = previous[key];
    const lat = parseFloat($("zone-lat").value), lng = parseFloat($("zone-lng").value);
    const sizing = $("zone-sizing").value;
    if ($("zone-area").value) out.area = JSON.parse($("zone-area").value);
    else if (sizing.startsWith("iso:")) { const [, mode, minutes] = sizing.split(":"); out.sizing = { lat, lng, mode, method: "isochrone", minutes: parseFloat(minutes) }; }
    else if (sizing) { const [profile, minutes] = sizing.split(":"); out.sizing = { lat, lng, profile, minutes: parseFloat(minutes) }; }
    else out.circle = { lat, lng, radius_m: parseFloat($("zone-radius").value) };
    return out;
  }

  $("zone-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = $("zone-id").value;
    const r = await Console.api(id ? "PUT" : "POST", id ? `zones/${encodeURIComponent(id)}` : "zones", body());
    if (!r.ok) { $("zone-status").textContent = `${r.status}: ${Console.detail(r.data)}`; return; }
    const g = r.data.zone.geometry || {};
    $("zone-status").textContent = `${r.data.name} — ${r.data.id}` + (g.radius_m ? ` (${Math.round(g.radius_m)} m)` : "");
    setMode(null);
    await load(false);
    edit(r.data.id);
  });
  $("zone-delete").addEventListener("click", async () => {
    const id = $("zone-id").value;
    const r = await Console.api("DELETE", `zones/${encodeURIComponent(id)}`);
    $("zone-status").textContent = r.ok ? `${id} ✕` : `${r.status}: ${Console.detail(r.data)}`;
    clearForm(); await load(false);
  });
  $("zone-cancel").addEventListener("click", () => { setMode(null); clearForm(); });
  ["zone-lat", "zone-lng", "zone-radius"].forEach((id) => $(id).addEventListener("input", draft));
  document.querySelectorAll("[data-mode]").forEach((b) => b.addEventListener("click", () => setMode(b.dataset.mode)));
  $("zone-search").addEventListener("input", list);
  $("zone-list").addEventListener("click", (e) => {
    const id = e.target.closest("button")?.dataset.id;
    const f = features.find((x) => x.properties.id === id);
    if (!f) return;
    edit(id);
    map.jumpTo({ center: [f.properties.cx, f.properties.cy], zoom: Math.max(map.getZoom(), 14) });
  });
  $("import-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const file = $("import-file").files[0];
    if (!file) return;
    const geo = /\.(geo)?json$/i.test(file.name);
    const r = await Console.api("POST", `zones/import?format=${geo ? "geojson" : "csv"}`, await file.text(), geo ? "application/geo+json" : "text/csv");
    const out = $("import-result");
    if (!r.ok) { out.innerHTML = `<p class="error">${r.status}: ${Console.esc(Console.detail(r.data))}</p>`; return; }
    const rows = r.data.errors.map((x) => `<tr><td>${x.line}</td><td>${Console.esc(x.reason)}</td></tr>`).join("");
    const words = out.dataset;
    out.innerHTML = `<p id="import-count">${r.data.imported} ✓</p>` + (rows ? `<table id="import-errors"><caption>${Console.esc(words.errors)}</caption><thead><tr><th scope="col">${Console.esc(words.line)}</th><th scope="col">${Console.esc(words.reason)}</th></tr></thead><tbody>${rows}</tbody></table>` : "");
    await load(true);
  });
  await load(true);
  document.body.dataset.ready = "zones";
})();
