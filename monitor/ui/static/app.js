// The UI's only script: draws the charts of a page from its JSON data block with uPlot,
// and drives the silence form. Names are data: they reach the page only through
// textContent or canvas text, never as markup. No inline script: the CSP forbids it.
"use strict";

(function () {
  const dataEl = document.getElementById("page-data");
  const data = dataEl ? JSON.parse(dataEl.textContent) : {};
  const page = document.body.dataset.page;
  const charts = (window.monitorCharts = { features: [], sparks: [] });
  const hasPlot = typeof window.uPlot === "function";
  const REF = "#4c78a8";
  const CUR = "#e45756";

  function width(el, fallback) {
    return Math.max(200, Math.floor((el && el.clientWidth) || fallback));
  }

  // Invisible and reordering characters (bidi overrides, zero-width, line separators) shown
  // as escapes, as the pages show them (monitor/ui/render.py, visible): names are hostile.
  const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]|\udb40[\udc00-\udc7f]/g;
  function visible(text) {
    return String(text).replace(INVISIBLE, (c) =>
      c.length > 1
        ? "\\U" + c.codePointAt(0).toString(16).padStart(8, "0")
        : "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  }

  function short(text, n) {
    text = visible(text);
    return text.length > n ? text.slice(0, n - 1) + "…" : text;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "—";
    return Math.abs(v) >= 1000 || (Math.abs(v) < 0.001 && v !== 0) ? v.toExponential(2) : +v.toPrecision(4) + "";
  }

  // Shares start at 0, so bar heights compare.
  function shareRange(u, min, max) {
    return [0, Math.max(0.01, max * 1.08)];
  }

  function bars(align) {
    return uPlot.paths.bars({ size: [0.4, 60], align: align });
  }

  function histogram(el, dist) {
    const b = dist.bins;
    const n = b.reference_share.length;
    const xs = Array.from({ length: n }, (_, i) => i);
    const edges = b.edges;
    const opts = {
      width: width(el, 560), height: 260,
      scales: { x: { time: false, range: [-0.5, n - 0.5] }, y: { range: shareRange } },
      axes: [
        { values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) && edges.length ? "≤" + fmt(edges[t + 1]) : "")), splits: () => xs, rotate: -35, size: 64 },
        { values: (u, ticks) => ticks.map((t) => (100 * t).toFixed(0) + "%") },
      ],
      series: [
        { label: "bin", value: (u, v) => (v == null ? "—" : "(" + fmt(edges[v]) + ", " + fmt(edges[v + 1]) + "]") },
        { label: "reference", stroke: REF, fill: REF + "99", paths: bars(-1), points: { show: false } },
        { label: "current", stroke: CUR, fill: CUR + "99", paths: bars(1), points: { show: false } },
      ],
    };
    return new uPlot(opts, [xs, b.reference_share, b.current_share], el);
  }

  function stepAt(cdf, x) {
    // F(x) of a step ECDF given at sorted points: the y of the last point <= x.
    let lo = 0, hi = cdf.x.length - 1, y = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (cdf.x[mid] <= x) { y = cdf.y[mid]; lo = mid + 1; } else { hi = mid - 1; }
    }
    return y;
  }

  function cdfChart(el, dist) {
    const ks = dist.ks;
    const xs = Array.from(new Set(dist.reference_cdf.x.concat(dist.current_cdf.x, ks ? [ks.x] : []))).sort((a, b) => a - b);
    const ref = xs.map((x) => stepAt(dist.reference_cdf, x));
    const cur = xs.map((x) => stepAt(dist.current_cdf, x));
    const kRef = xs.map((x) => (ks && x === ks.x ? ks.reference_cdf : null));
    const kCur = xs.map((x) => (ks && x === ks.x ? ks.current_cdf : null));
    const noLine = () => null;
    const opts = {
      width: width(el, 560), height: 260,
      scales: { x: { time: false }, y: { range: [0, 1] } },
      series: [
        { label: "x", value: (u, v) => fmt(v) },
        { label: "reference", stroke: REF, width: 2, paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } },
        { label: "current", stroke: CUR, width: 2, paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } },
        { label: "KS point (reference)", stroke: "#222", fill: REF, paths: noLine, points: { show: true, size: 11 } },
        { label: "KS point (current)", stroke: "#222", fill: CUR, paths: noLine, points: { show: true, size: 11 } },
      ],
    };
    return new uPlot(opts, [xs, ref, cur, kRef, kCur], el);
  }

  function categoryBars(el, dist) {
    const cats = dist.categories;
    const xs = cats.map((_, i) => i);
    const opts = {
      width: width(el, 560), height: 280,
      scales: { x: { time: false, range: [-0.5, cats.length - 0.5] }, y: { range: shareRange } },
      axes: [
        { values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) && cats[t] ? short(cats[t].category, 14) + (cats[t].new ? " (new)" : "") : "")), splits: () => xs, rotate: cats.length > 6 ? -40 : 0, size: cats.length > 6 ? 90 : 40 },
        { values: (u, ticks) => ticks.map((t) => (100 * t).toFixed(0) + "%") },
      ],
      series: [
        { label: "category", value: (u, v) => (v == null || !cats[v] ? "—" : short(cats[v].category, 40)) },
        { label: "reference", stroke: REF, fill: REF + "99", paths: bars(-1), points: { show: false } },
        { label: "current", stroke: CUR, fill: CUR + "99", paths: bars(1), points: { show: false } },
      ],
    };
    return new uPlot(opts, [xs, cats.map((c) => c.reference_share), cats.map((c) => c.current_share)], el);
  }

  // The drift score: log10 of how far the headline result is past its threshold
  // (statistic / threshold, or threshold / p-value): 0 is at the threshold, 2 is 100x past.
  function score(p) {
    return p.strength == null || p.strength <= 0 ? null : Math.log10(p.strength);
  }

  function historyChart(el, history) {
    const xs = history.map((p) => p.seq);
    const opts = {
      width: width(el, 560), height: 200,
      scales: { x: { time: false } },
      axes: [{ incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }, {}],
      series: [
        { label: "evaluation" },
        { label: "drift score (log10 × threshold)", stroke: CUR, width: 2, value: (u, v) => fmt(v) },
        { label: "threshold", stroke: "#888", dash: [4, 4], points: { show: false } },
      ],
    };
    return new uPlot(opts, [xs, history.map(score), history.map(() => 0)], el);
  }

  function sparkline(el, history) {
    const xs = history.map((p) => p.seq);
    const opts = {
      width: 140, height: 36,
      legend: { show: false }, cursor: { show: false },
      scales: { x: { time: false } },
      axes: [{ show: false }, { show: false }],
      series: [{}, { stroke: CUR, width: 1.5, points: { show: false } }],
    };
    return new uPlot(opts, [xs, history.map(score)], el);
  }

  function drawFeature(section, view) {
    const d = view.distribution;
    const out = { feature: view.feature };
    if (d && d.kind === "numeric") {
      out.hist = histogram(section.querySelector(".chart.hist"), d);
      out.cdf = cdfChart(section.querySelector(".chart.cdf"), d);
    } else if (d && d.kind === "categorical") {
      out.bars = categoryBars(section.querySelector(".chart.bars"), d);
    }
    const h = section.querySelector(".chart.history");
    if (h && view.column.history.length) out.history = historyChart(h, view.column.history);
    charts.features.push(out);
  }

  function draw() {
    if (page === "model") {
      document.querySelectorAll(".spark").forEach((el) => {
        const col = data.columns[+el.dataset.column];
        if (col && col.history.length) charts.sparks.push(sparkline(el, col.history));
      });
    } else if (page === "feature") {
      drawFeature(document.querySelector("section.feature"), data);
    } else if (page === "report") {
      document.querySelectorAll("section.feature").forEach((s) => drawFeature(s, data.features[+s.dataset.feature]));
    }
  }

  function silences() {
    const result = document.getElementById("silence-result");
    const form = document.getElementById("new-silence");
    const tokenInput = form ? form.elements.token : null;
    function say(text) { if (result) result.textContent = text; }
    async function call(method, url, body) {
      const headers = { Authorization: "Bearer " + (tokenInput ? tokenInput.value : "") };
      if (body) headers["Content-Type"] = "application/json";
      const r = await fetch(url, { method, headers, body: body ? JSON.stringify(body) : undefined });
      const payload = await r.json().catch(() => ({}));
      return { ok: r.ok, status: r.status, payload };
    }
    if (form) {
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const f = form.elements;
        const matchers = {
          model: f.model.value || "*", subject: f.subject.value || "*",
          segment: f.segment.value || "*",
        };
        if (f.kind.value) matchers.kind = f.kind.value;
        const r = await call("POST", "/api/silences", {
          matchers, duration_seconds: 60 * Number(f.minutes.value || 60),
          comment: f.comment.value, created_by: f.created_by.value,
        });
        if (r.ok) { say("Created silence " + r.payload.id + "."); setTimeout(() => location.reload(), 300); }
        else say("Refused (" + r.status + "): " + (r.payload.error || "error"));
      });
    }
    document.querySelectorAll("button.expire").forEach((b) => {
      b.addEventListener("click", async () => {
        if (!tokenInput || !tokenInput.value) { say("Enter the admin token first."); return; }
        const r = await call("DELETE", "/api/silences/" + encodeURIComponent(b.dataset.id));
        if (r.ok) { say("Expired."); setTimeout(() => location.reload(), 300); }
        else say("Refused (" + r.status + "): " + (r.payload.error || "error"));
      });
    });
  }

  if (hasPlot) draw();
  if (page === "silences") silences();
  document.body.dataset.ready = "1";
})();
