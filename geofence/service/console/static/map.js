/* The console's map: MapLibre GL JS with a basemap from the settings, or a plain background when none
   is set or reachable. Zone labels are HTML markers (a symbol layer would need font files from a
   server), shown for the zones in view only. */
"use strict";
const ConsoleMap = (() => {
  const OSM = '© <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors';
  const plainStyle = { version: 8, sources: {}, layers: [{ id: "background", type: "background", paint: { "background-color": "#eef1f4" } }] };

  async function styleFor(url) {
    if (!url) return { style: plainStyle, basemap: false };
    if (url.includes("{z}")) {
      return { basemap: true, style: { version: 8, sources: { basemap: { type: "raster", tiles: [url], tileSize: 256, attribution: OSM } },
        layers: [plainStyle.layers[0], { id: "basemap", type: "raster", source: "basemap" }] } };
    }
    try {
      const ctrl = new AbortController();
      setTimeout(() => ctrl.abort(), 3000);
      const r = await fetch(url, { signal: ctrl.signal });
      if (r.ok) return { style: await r.json(), basemap: true };
    } catch (e) { /* unreachable: plain background */ }
    return { style: plainStyle, basemap: false };
  }

  async function create(container, note) {
    const { style, basemap } = await styleFor(container.dataset.basemap);
    if (note) note.hidden = basemap;
    const map = new maplibregl.Map({ container, style, center: [2.35, 48.85], zoom: 10, attributionControl: false });
    map.addControl(new maplibregl.AttributionControl({ compact: false, customAttribution: OSM }));
    map.addControl(new maplibregl.NavigationControl());
    await new Promise((resolve) => map.on("load", resolve));
    return map;
  }

  function circle(lng, lat, radiusM, steps = 64) {
    const ring = [];
    const dLat = radiusM / 111320;
    const dLng = radiusM / (111320 * Math.cos((lat * Math.PI) / 180));
    for (let i = 0; i <= steps; i++) {
      const a = (2 * Math.PI * i) / steps;
      ring.push([lng + dLng * Math.cos(a), lat + dLat * Math.sin(a)]);
    }
    return { type: "Polygon", coordinates: [ring] };
  }

  function colour(tag) {
    if (!tag) return "#5b6b7a";
    let h = 0;
    for (const c of tag) h = (h * 31 + c.charCodeAt(0)) % 360;
    return `hsl(${h}, 65%, 40%)`;
  }

  /* GeoJSON export of the API (circles as points with radius_m) -> polygons with a colour. */
  function toFeatures(collection) {
    return (collection.features || []).map((f) => {
      const p = f.properties || {};
      const tags = p.tags || [];
      const geometry = f.geometry.type === "Point" ? circle(f.geometry.coordinates[0], f.geometry.coordinates[1], p.radius_m) : f.geometry;
      const centre = f.geometry.type === "Point" ? f.geometry.coordinates : centroid(geometry);
      return { type: "Feature", id: undefined, geometry, properties: { id: f.id, name: p.name || f.id, tag: tags[0] || "", color: colour(tags[0]), cx: centre[0], cy: centre[1] } };
    });
  }

  function centroid(g) {
    const ring = g.type === "Polygon" ? g.coordinates[0] : g.coordinates[0][0];
    let x = 0, y = 0;
    ring.forEach((c) => { x += c[0]; y += c[1]; });
    return [x / ring.length, y / ring.length];
  }

  function addZoneLayers(map, sourceId) {
    map.addSource(sourceId, { type: "geojson", data: { type: "FeatureCollection", features: [] } });
    map.addLayer({ id: `${sourceId}-fill`, type: "fill", source: sourceId, paint: { "fill-color": ["get", "color"], "fill-opacity": 0.25 } });
    map.addLayer({ id: `${sourceId}-line`, type: "line", source: sourceId, paint: { "line-color": ["get", "color"], "line-width": 2 } });
  }

  /* Labels of the zones in view (at most 300), as markers. */
  function labeller(map, getFeatures) {
    let markers = [];
    function refresh() {
      markers.forEach((m) => m.remove());
      const b = map.getBounds();
      markers = getFeatures().filter((f) => b.contains([f.properties.cx, f.properties.cy])).slice(0, 300).map((f) => {
        const el = document.createElement("div");
        el.className = "zone-label";
        el.textContent = f.properties.name;
        el.style.borderColor = f.properties.color;
        const marker = new maplibregl.Marker({ element: el }).setLngLat([f.properties.cx, f.properties.cy]).addTo(map);
        // a label, not a control: the zone list is the keyboard's way to a zone
        ["role", "aria-label", "tabindex"].forEach((a) => el.removeAttribute(a));
        el.setAttribute("aria-hidden", "true");
        return marker;
      });
    }
    map.on("moveend", refresh);
    return refresh;
  }

  function fit(map, features) {
    if (!features.length) return;
    const b = new maplibregl.LngLatBounds();
    features.forEach((f) => { const g = f.geometry; (g.type === "Polygon" ? g.coordinates[0] : g.coordinates.flat(2).length ? g.coordinates[0][0] : []).forEach((c) => b.extend(c)); });
    map.fitBounds(b, { padding: 40, maxZoom: 16, duration: 0 });
  }

  return { create, circle, colour, toFeatures, addZoneLayers, labeller, fit, OSM };
})();
