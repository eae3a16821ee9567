/* Live page: zone events and decisions as they happen (server-sent events), on the map and in two lists,
   with a pause. The stream carries no customer id, phone number or push token. */
"use strict";
(async () => {
  const $ = (id) => document.getElementById(id);
  let paused = false;
  const held = [];
  let map = null;
  try {
    map = await ConsoleMap.create($("map"), $("map-note"));
    ConsoleMap.addZoneLayers(map, "zones");
    map.addSource("live", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
    map.addLayer({ id: "live-dots", type: "circle", source: "live", paint: { "circle-radius": 7, "circle-color": ["match", ["get", "kind"], "ENTER", "#2b8a3e", "EXIT", "#a4161a", "#e67700"], "circle-stroke-color": "#fff", "circle-stroke-width": 2 } });
    const r = await Console.api("GET", `${Console.prefix}/zones.geojson`);
    if (r.ok) {
      const f = ConsoleMap.toFeatures(r.data);
      map.getSource("zones").setData({ type: "FeatureCollection", features: f });
      const labels = ConsoleMap.labeller(map, () => f);
      ConsoleMap.fit(map, f);
      labels();
    }
  } catch (e) { $("map-note").hidden = false; }
  const dots = [];
  function show(item) {
    const li = document.createElement("li");
    if (item.type === "zone_event") {
      li.className = `event ${item.kind}`;
      li.textContent = `${item.at.slice(11, 19)} ${item.kind} · ${item.zone_name} · ${item.device_id ?? ""} · ${item.reason}`;
      $("live-events").prepend(li);
      if (map && item.lat != null) {
        dots.unshift({ type: "Feature", geometry: { type: "Point", coordinates: [item.lng, item.lat] }, properties: { kind: item.kind } });
        dots.length = Math.min(dots.length, 200);
        map.getSource("live").setData({ type: "FeatureCollection", features: dots });
      }
    } else if (item.type === "arrival") {
      li.className = "event ARRIVAL";
      li.textContent = `${(item.at || "").slice(11, 19)} ${document.body.dataset.lang === "fr" ? "ARRIVÉE · magasin prévenu" : "ARRIVAL · store told"} · ${item.zone_name}`;
      $("live-events").prepend(li);
    } else {
      li.className = `decision ${item.status}`;
      li.textContent = `${(item.at || "").slice(11, 19)} ${item.status}${item.reason ? ` (${item.reason})` : ""} · ${item.campaign_id ?? ""} · ${item.zone_name ?? ""} · ${item.channel}`;
      $("live-decisions").prepend(li);
    }
    for (const list of [$("live-events"), $("live-decisions")]) while (list.children.length > 300) list.lastChild.remove();
  }
  const source = new EventSource(`${Console.prefix}/live/stream`);
  const onItem = (e) => { const item = JSON.parse(e.data); if (paused) held.push(item); else show(item); };
  source.addEventListener("zone_event", onItem);
  source.addEventListener("decision", onItem);
  source.addEventListener("arrival", onItem);
  const fr = document.body.dataset.lang === "fr";
  source.onopen = () => { $("live-state").textContent = fr ? "● connecté" : "● connected"; document.body.dataset.ready = "live"; };
  source.onerror = () => { $("live-state").textContent = fr ? "… reconnexion" : "… reconnecting"; };
  $("live-pause").addEventListener("click", (e) => {
    paused = !paused;
    e.target.setAttribute("aria-pressed", String(paused));
    e.target.textContent = paused ? e.target.dataset.resume : e.target.dataset.pause;
    if (!paused) held.splice(0).forEach(show);
  });
})();
