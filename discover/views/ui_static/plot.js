// plot.js: the few SVG charts `discover ui` draws (lines and stacked bars). No dependencies and
// nothing fetched from elsewhere: the machines that run discover may have no internet.
"use strict";

const Plot = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const M = { left: 58, right: 14, top: 26, bottom: 40 };

  function svg(tag, attrs, parent) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (parent) parent.appendChild(e);
    return e;
  }

  function text(parent, x, y, s, attrs) {
    const t = svg("text", { x, y, ...attrs }, parent);
    t.textContent = s;
    return t;
  }

  // About n round tick values covering [lo, hi].
  function ticks(lo, hi, n, integer) {
    if (!(hi > lo)) return [lo];
    let step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
    for (const f of [1, 2, 5, 10]) {
      if ((hi - lo) / (step * f) <= n) { step *= f; break; }
    }
    if (integer) step = Math.max(1, Math.round(step));
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    }
    return out;
  }

  function num(x) {
    if (x === null || x === undefined) return "-";
    const a = Math.abs(x);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return x.toExponential(2);
    return String(+x.toPrecision(6));
  }

  function extent(values, pad) {
    let lo = Math.min(...values), hi = Math.max(...values);
    if (lo === hi) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
    else if (pad) { const d = (hi - lo) * pad; lo -= d; hi += d; }
    return [lo, hi];
  }

  // The frame of a chart: the svg, its scales and axes. x and y are [lo, hi].
  function frame(box, opt, x, y) {
    box.textContent = "";
    const W = opt.width || Math.max(320, (box.clientWidth || 480) - 10), H = opt.height || 230;
    const root = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "plot" }, box);
    const sx = (v) => M.left + ((v - x[0]) / (x[1] - x[0])) * (W - M.left - M.right);
    const sy = (v) => H - M.bottom - ((v - y[0]) / (y[1] - y[0])) * (H - M.top - M.bottom);
    text(root, M.left, 16, opt.title || "", { class: "title" });
    const axes = svg("g", { class: "axes" }, root);
    for (const v of ticks(y[0], y[1], 5, false)) {
      svg("line", { x1: M.left, x2: W - M.right, y1: sy(v), y2: sy(v), class: "grid" }, axes);
      text(axes, M.left - 6, sy(v) + 4, num(v), { "text-anchor": "end" });
    }
    for (const v of ticks(x[0], x[1], 7, opt.xint)) {
      svg("line", { x1: sx(v), x2: sx(v), y1: H - M.bottom, y2: H - M.bottom + 4 }, axes);
      text(axes, sx(v), H - M.bottom + 16, num(v), { "text-anchor": "middle" });
    }
    svg("rect", { x: M.left, y: M.top, width: W - M.left - M.right,
                  height: H - M.top - M.bottom, class: "frame" }, axes);
    text(axes, (M.left + W - M.right) / 2, H - 6, opt.xlabel || "", { "text-anchor": "middle" });
    text(axes, 12, (M.top + H - M.bottom) / 2, opt.ylabel || "",
         { "text-anchor": "middle", transform: `rotate(-90 12 ${(M.top + H - M.bottom) / 2})` });
    return { root, sx, sy, W, H };
  }

  function empty(box, opt) {
    box.textContent = "";
    const p = document.createElement("p");
    p.className = "note";
    p.textContent = `${opt.title}: ${opt.empty || "nothing to plot yet"}`;
    box.appendChild(p);
  }

  function legend(root, W, items) {
    let x = W - M.right;
    for (const it of [...items].reverse()) {
      const t = text(root, x, 16, it.name, { "text-anchor": "end", class: "legend" });
      x -= t.getComputedTextLength ? t.getComputedTextLength() + 4 : it.name.length * 7 + 4;
      svg("rect", { x: x - 10, y: 7, width: 10, height: 10, fill: it.color }, root);
      x -= 18;
    }
  }

  // series: [{name, color, key, points: [{x, y, label, id}], step}]; onclick(point) optional.
  function line(box, opt) {
    const pts = opt.series.flatMap((s) => s.points);
    if (!pts.length) return empty(box, opt);
    const f = frame(box, opt, extent(pts.map((p) => p.x), 0.03),
                    extent(pts.map((p) => p.y), 0.08));
    for (const s of opt.series) {
      const g = svg("g", { class: "series", "data-key": s.key, "data-n": s.points.length,
                           "data-last-x": s.points.length ? s.points[s.points.length - 1].x : "" },
                    f.root);
      if (!s.points.length) continue;
      const joined = s.points.filter((p) => !p.hollow);  // hollow: drawn, not joined
      if (joined.length) {
        let d = `M${f.sx(joined[0].x)},${f.sy(joined[0].y)}`;
        for (const p of joined.slice(1)) {
          d += s.step ? `H${f.sx(p.x)}V${f.sy(p.y)}` : `L${f.sx(p.x)},${f.sy(p.y)}`;
        }
        svg("path", { d, stroke: s.color, fill: "none", "stroke-width": 2 }, g);
      }
      for (const p of s.points) {
        if (p.hidden) continue;
        const c = svg("circle", { cx: f.sx(p.x), cy: f.sy(p.y), r: 3.5,
                                  fill: p.hollow ? "#fff" : s.color, stroke: s.color,
                                  class: p.id !== undefined && opt.onclick ? "pt link" : "pt" }, g);
        svg("title", {}, c).textContent = `${s.name}: ${p.label || `${num(p.x)}, ${num(p.y)}`}`;
        if (p.id !== undefined && opt.onclick) c.addEventListener("click", () => opt.onclick(s, p));
      }
    }
    const shown = opt.series.filter((s) => s.points.length);
    if (opt.series.length > 1) legend(f.root, f.W, shown);
  }

  // bars: [{x, parts: [{name, value, color}]}], stacked from 0; x are integers (steps).
  function bars(box, opt) {
    if (!opt.bars.length) return empty(box, opt);
    const xs = opt.bars.map((b) => b.x);
    const top = opt.ymax || Math.max(...opt.bars.map((b) => b.parts.reduce((a, p) => a + p.value, 0)));
    const f = frame(box, { ...opt, xint: true }, [Math.min(...xs) - 0.6, Math.max(...xs) + 0.6],
                    [0, top || 1]);
    const bw = Math.max(2, (f.sx(1) - f.sx(0)) * 0.7);
    const g = svg("g", { class: "bars", "data-n": opt.bars.length,
                         "data-last-x": xs[xs.length - 1] }, f.root);
    for (const b of opt.bars) {
      let base = 0;
      for (const p of b.parts) {
        if (!p.value) continue;
        const r = svg("rect", { x: f.sx(b.x) - bw / 2, y: f.sy(base + p.value), width: bw,
                                height: f.sy(base) - f.sy(base + p.value), fill: p.color }, g);
        svg("title", {}, r).textContent = `step ${b.x}: ${p.name} ${num(p.value)}${p.note || ""}`;
        base += p.value;
      }
    }
    if (opt.legend) legend(f.root, f.W, opt.legend);
  }

  return { line, bars, num };
})();
