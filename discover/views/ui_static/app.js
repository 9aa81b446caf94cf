// The page of `discover ui`: reads the JSON API (README: "discover ui"), polls /api/state and
// redraws what changed, so it follows runs while they write. Plain JS, no build step.
"use strict";

const POLL_MS = +new URLSearchParams(location.search).get("poll") || 2000;
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
                 "#17becf"];
const FAIL_COLOURS = ["#e53935", "#fb8c00", "#8e24aa", "#6d4c41", "#d81b60", "#757575",
                      "#9e9d24", "#00838f"];
const VALID_COLOUR = "#43a047";
const state = { runs: [], stateKey: null, view: null, refreshes: 0, queue: Promise.resolve(),
                table: { run: 0, sort: "reward", order: "desc", failure: "", step: "",
                         version: "", min_score: "", max_score: "", limit: 200 } };
const num = Plot.num;

// --- helpers ---------------------------------------------------------------------------------

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const kid of kids.flat()) {
    if (kid !== null && kid !== undefined && kid !== false) {
      e.append(kid instanceof Node ? kid : String(kid));
    }
  }
  return e;
}

async function api(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

const $ = (id) => document.getElementById(id);
const candUrl = (run, id) => `#/run/${run}/candidate/${id}`;
const runLabel = (r) => (state.runs.length > 1 ? `${r.index}: ${r.name}` : r.name);
const colour = (i) => COLOURS[i % COLOURS.length];

function duration(s) {
  if (s === null || s === undefined) return "-";
  if (s < 120) return `${s.toFixed(0)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function describe(c) {
  const what = c.ok ? `score ${num(c.score)}` : `failed: ${c.failure}`;
  return `#${c.id}  step ${c.step}  ${what}${c.initial ? "  (initial)" : ""}`;
}

function badgeWriting(r) {
  if (r.error) return h("span", { class: "badge failed", title: r.error }, "no archive");
  if (r.writing === null) return null;
  return r.writing ? h("span", { class: "badge writing" }, "writing")
    : h("span", { class: "badge stopped" }, "stopped");
}

// --- the lineage tree (overview and candidate page) ------------------------------------------

function treeNode(run, n, target) {
  return h("a", { href: candUrl(run, n.id), class: n.id === target ? "this" : null,
                  "data-id": n.id }, describe(n), `  v${n.policy_version}`);
}

function descendants(run, d, target) {
  if (!d.children.length && !d.more) return null;
  return h("ul", {},
    d.children.map((c) => h("li", {}, treeNode(run, c, target),
                            descendants(run, c.descendants, target))),
    d.more ? h("li", { class: "sib" }, `... ${d.more} more children (${d.more_valid} valid)`)
      : null);
}

function renderTree(box, run, t) {
  box.textContent = "";
  let ul = h("ul");
  box.append(ul);
  t.chain.forEach((n, i) => {
    const sib = n.siblings ? h("span", { class: "sib" },
      `   [${n.siblings} siblings: ${n.siblings_valid} valid` +
      (n.best_sibling ? `, best #${n.best_sibling.id} score ${num(n.best_sibling.score)}` : "") +
      "]") : null;
    const li = h("li", {}, treeNode(run, n, t.target), sib);
    ul.append(li);
    if (i < t.chain.length - 1) {
      const next = h("ul");
      li.append(next);
      ul = next;
    } else {
      li.append(descendants(run, t.descendants, t.target) || "");
    }
  });
}

async function loadTree(box, run, id) {
  try {
    renderTree(box, run, await api(`/api/runs/${run}/tree?depth=1${id ? `&id=${id}` : ""}`));
  } catch (e) {
    box.textContent = "";
    box.append(h("p", { class: "note" }, e.message));
  }
}

// --- the overview ----------------------------------------------------------------------------

function buildOverview(main) {
  const t = state.table;
  main.append(
    h("h2", {}, "Runs"), h("div", { id: "runs" }),
    h("h2", {}, "Curves"),
    h("div", { class: "grid" },
      ["best-step", "best-time", "samples-per-hour", "beta", "kl", "loss", "policy_kl",
       "logp_change"].map((id) =>
        h("div", { class: "chart", id: `chart-${id}` }))),
    h("h2", {}, "Valid programs and failure kinds per step"),
    h("div", { class: "side", id: "valid-charts" }),
    h("h2", {}, "Candidates"),
    h("div", { class: "filters" },
      h("label", {}, "run ", h("select", { id: "f-run", onchange: (e) => {
        t.run = +e.target.value; t.step = t.version = t.failure = ""; queueRefresh(); } })),
      h("label", {}, "status ", h("select", { id: "f-failure", onchange: (e) => {
        t.failure = e.target.value; queueRefresh(); } })),
      h("label", {}, "step ", h("select", { id: "f-step", onchange: (e) => {
        t.step = e.target.value; queueRefresh(); } })),
      h("label", {}, "policy version ", h("select", { id: "f-version", onchange: (e) => {
        t.version = e.target.value; queueRefresh(); } })),
      h("label", {}, "score from ", h("input", { id: "f-min", type: "number", step: "any",
        size: 6, onchange: (e) => { t.min_score = e.target.value; queueRefresh(); } })),
      h("label", {}, " to ", h("input", { id: "f-max", type: "number", step: "any", size: 6,
        onchange: (e) => { t.max_score = e.target.value; queueRefresh(); } })),
      h("span", { id: "f-count", class: "note" })),
    h("div", { class: "tablebox" }, h("table", { id: "cands" })),
    h("div", {}, h("button", { id: "more", onclick: () => { t.limit += 500; queueRefresh(); } },
                   "show more")),
    h("h2", {}, "Lineage of the best candidate ", h("span", { id: "tree-of" })),
    h("div", { class: "tree", id: "tree" }));
}

function fillRuns(runs, series) {
  const head = ["run", "environment", "", "steps", "samples", "valid", "best score",
                "best", "samples to best", "time to best", "samples / hour (last step)"];
  const rows = runs.map((r) => {
    const s = r.stats || {};
    const last = (series[r.index] || { steps: [] }).steps.slice(-1)[0];
    return h("tr", { "data-run": r.index },
      h("td", { title: r.path }, h("span", { style: `color:${colour(r.index)}` }, "\u25A0 "),
        runLabel(r)),
      h("td", {}, r.env ? `${r.env} (${r.better})` : (r.error || "")),
      h("td", {}, badgeWriting(r)),
      h("td", { class: "num" }, s.steps ?? "-"), h("td", { class: "num" }, s.samples ?? "-"),
      h("td", { class: "num" }, s.valid_rate == null ? "-" : `${(100 * s.valid_rate).toFixed(1)}%`),
      h("td", { class: "num" }, num(s.best_score)),
      h("td", {}, s.best_id ? h("a", { href: candUrl(r.index, s.best_id), class: "best-link" },
                                `#${s.best_id} (step ${s.best_step})`) : "-"),
      h("td", { class: "num" }, s.samples_to_best ?? "-"),
      h("td", { class: "num" }, duration(s.time_to_best_s)),
      h("td", { class: "num" }, last && last.samples_per_hour != null
        ? Math.round(last.samples_per_hour).toLocaleString() : "-"));
  });
  const box = $("runs");
  box.textContent = "";
  box.append(h("table", {}, h("tr", {}, head.map((x) => h("th", {}, x))), rows));
}

function fillCharts(runs, series) {
  const live = runs.filter((r) => series[r.index]);
  const go = (s, p) => { location.hash = candUrl(s.key, p.id); };
  Plot.line($("chart-best-step"), {
    title: "best score so far, by step", xlabel: "step (-1: initial states)",
    ylabel: "best score", xint: true, onclick: go, empty: "no valid candidate yet",
    series: live.map((r) => ({ name: runLabel(r), key: r.index, color: colour(r.index),
      step: true, points: series[r.index].best_by_step.map((b) => ({ x: b.step, y: b.score,
        id: b.id, label: `step ${b.step}: best ${num(b.score)} (#${b.id})` })) })) });
  const tmax = Math.max(0, ...live.flatMap((r) => series[r.index].best_by_time.map((b) => b.t)));
  const [scale, unit] = tmax > 7200 ? [3600, "hours"] : tmax > 120 ? [60, "minutes"] : [1, "s"];
  Plot.line($("chart-best-time"), {
    title: "best score so far, by wall time", xlabel: `wall time since the run started (${unit})`,
    ylabel: "best score", onclick: go, empty: "no valid candidate yet",
    series: live.map((r) => ({ name: runLabel(r), key: r.index, color: colour(r.index),
      step: true, points: series[r.index].best_by_time.map((b, i, all) => ({ x: b.t / scale,
        y: b.score, id: b.id, hidden: i > 0 && all[i - 1].id === b.id && i < all.length - 1,
        label: `${duration(b.t)}: best ${num(b.score)} (#${b.id})` })) })) });
  const perStep = (key, get) => live.map((r) => ({ name: runLabel(r), key: r.index,
    color: colour(r.index), points: series[r.index].steps.filter((m) => get(m) != null)
      .map((m) => {
        const skipped = key !== "sph" && m.learner.skipped;  // the learner made no update
        return { x: m.step, y: get(m), hollow: skipped, label: `step ${m.step}: ${num(get(m))}` +
                 (skipped ? " (no update: every advantage was 0)" : "") };
      }) }));
  Plot.line($("chart-samples-per-hour"), {
    title: "samples per hour", xlabel: "step", ylabel: "samples / hour", xint: true,
    empty: "no step finished yet",
    series: perStep("sph", (m) => m.samples_per_hour) });
  const learn = (k) => (m) => (m.learner ? m.learner[k] : null);
  const none = "no learner in these runs (learner.method = none), or no step yet";
  for (const [k, what] of [["beta", "beta (entropic; hollow: no update)"],
                           ["kl", "KL of the reweighting"], ["loss", "learner loss"],
                           ["policy_kl", "KL of the adapted model to the base"],
                           ["logp_change", "mean |change| of the samples' log-probs"]]) {
    Plot.line($(`chart-${k}`), { title: what, xlabel: "step", ylabel: k, xint: true,
                                 empty: none, series: perStep(k, learn(k)) });
  }
  const box = $("valid-charts");
  box.replaceChildren(...live.map((r) => h("div", { class: "chart", id: `chart-valid-${r.index}` })));
  for (const r of live) {  // drawn once all are in place: their widths depend on the row
    const steps = series[r.index].steps;
    const kinds = [...new Set(steps.flatMap((m) => Object.keys(m.failures)))].sort();
    const kc = (k) => FAIL_COLOURS[kinds.indexOf(k) % FAIL_COLOURS.length];
    const chart = $(`chart-valid-${r.index}`);
    const rate = steps.reduce((a, m) => a + m.valid, 0) /
      Math.max(1, steps.reduce((a, m) => a + m.total, 0));
    Plot.bars(chart, {
      title: `${runLabel(r)}: valid (green) ${steps.length ? (100 * rate).toFixed(0) : "-"}%`,
      xlabel: "step", ylabel: "share of the step's programs", ymax: 1,
      empty: "no step finished yet",
      legend: [{ name: "valid", color: VALID_COLOUR }, ...kinds.map((k) => ({ name: k,
                                                                               color: kc(k) }))],
      bars: steps.map((m) => ({ x: m.step, parts: [
        { name: "valid", value: m.valid / Math.max(1, m.total), color: VALID_COLOUR,
          note: ` (${m.valid} of ${m.total})` },
        ...kinds.map((k) => ({ name: k, value: (m.failures[k] || 0) / Math.max(1, m.total),
                               color: kc(k), note: ` (${m.failures[k] || 0} of ${m.total})` }))] })),
    });
  }
}

function fillSelect(sel, options, value) {
  sel.textContent = "";
  for (const [v, text] of options) sel.append(h("option", { value: v }, text));
  sel.value = value;
}

async function fillTable(runs) {
  const t = state.table;
  const run = runs[t.run] || runs[0];
  fillSelect($("f-run"), runs.map((r) => [r.index, runLabel(r)]), t.run);
  const box = $("cands");
  if (!run || run.error) {
    box.textContent = "";
    $("f-count").textContent = run ? run.error : "";
    return;
  }
  const q = new URLSearchParams({ sort: t.sort, order: t.order, limit: t.limit });
  for (const k of ["failure", "step", "version", "min_score", "max_score"]) {
    if (t[k] !== "") q.set(k, t[k]);
  }
  const data = await api(`/api/runs/${run.index}/candidates?${q}`);
  fillSelect($("f-failure"), [["", "all"], ["valid", "valid"], ["failed", "failed (any)"],
                              ...data.failure_kinds.map((k) => [k, k])], t.failure);
  fillSelect($("f-step"), [["", "all"], ...data.steps.map((s) => [s, s])], t.step);
  fillSelect($("f-version"), [["", "all"], ...data.policy_versions.map((v) => [v, v])],
             t.version);
  $("f-min").value = t.min_score;
  $("f-max").value = t.max_score;
  $("f-count").textContent = `${data.rows.length} of ${data.total} shown`;
  $("more").style.display = data.rows.length < data.total ? "" : "none";
  const cols = [["id", "id"], ["step", "step"], ["score", "score"], ["reward", "reward"],
                ["failure", "status"], ["policy_version", "policy version"], [null, "parent"]];
  const sortBy = (k) => () => {
    t.order = t.sort === k && t.order === "desc" ? "asc" : "desc";
    t.sort = k;
    queueRefresh();
  };
  const bestId = run.stats ? run.stats.best_id : null;
  box.textContent = "";
  box.append(h("tr", {}, cols.map(([k, name]) => h("th", {
    class: [k ? "sort" : "", t.sort === k ? "on" : "", t.sort === k && t.order === "asc" ? "asc"
      : "", ["id", "step", "score", "reward", "policy_version"].includes(k) ? "num" : ""]
      .filter(Boolean).join(" "),
    "data-sort": k, onclick: k ? sortBy(k) : null }, name))));
  for (const r of data.rows) {
    box.append(h("tr", { class: `row${r.id === bestId ? " best" : ""}`, "data-id": r.id,
                         onclick: () => { location.hash = candUrl(run.index, r.id); } },
      h("td", { class: "num" }, r.id), h("td", { class: "num" }, r.step),
      h("td", { class: "num" }, num(r.score)), h("td", { class: "num" }, num(r.reward)),
      h("td", {}, r.ok ? (r.initial ? "valid (initial)" : "valid")
        : h("span", { class: "error" }, r.failure)),
      h("td", { class: "num" }, r.policy_version), h("td", { class: "num" }, r.parent_id ?? "-")));
  }
}

async function updateOverview() {
  const runs = (await api("/api/runs")).runs;
  state.runs = runs;
  const series = {};
  await Promise.all(runs.filter((r) => !r.error).map(async (r) => {
    series[r.index] = await api(`/api/runs/${r.index}/series`);
  }));
  fillRuns(runs, series);
  fillCharts(runs, series);
  await fillTable(runs);
  const run = runs[state.table.run];
  $("tree-of").textContent = run ? `of ${runLabel(run)}` : "";
  if (run && !run.error) await loadTree($("tree"), run.index, null);
}

// --- a candidate's page ----------------------------------------------------------------------

function pre(text, attrs) {
  return h("pre", attrs || {}, text === null || text === undefined || text === "" ? "(empty)"
    : text);
}

function diffView(d) {
  const box = h("pre", { class: "diff", id: "diff" });
  for (const line of d.lines) {
    const kind = line.startsWith("@@") ? "hunk" : line.startsWith("+++") || line.startsWith("---")
      ? "hunk" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "ctx";
    box.append(h("span", { class: kind }, line || " "));
  }
  if (!d.lines.length) box.append(d.note || "(no difference)");
  return box;
}

function facts(run, c) {
  const link = (x) => (x ? h("a", { href: candUrl(run, x.id) }, describe(x)) : "-");
  const rows = [
    ["status", c.ok ? "valid" : h("span", { class: "error" }, `failed (${c.failure})`)],
    ["score", num(c.score)], ["reward", num(c.reward)],
    ["step, group", `${c.step}, ${c.group_idx ?? "-"}`], ["parent", link(c.parent)],
    ["policy version", c.policy_version],
    ["generation / evaluation", `${c.gen_s.toFixed(2)} s / ${c.eval_s.toFixed(2)} s`],
    ["children", c.children.length]];
  if (Object.keys(c.metrics || {}).length) rows.push(["metrics", JSON.stringify(c.metrics)]);
  return h("table", { class: "facts", id: "facts" },
           rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))));
}

function picture(run, c) {
  const box = h("div", { id: "picture" });
  if (!c.ok) {
    box.append(h("p", { class: "note" }, "a failed candidate has no artefact to draw"));
    return box;
  }
  const url = `/api/runs/${run}/candidates/${c.id}/picture.png`;
  const img = h("img", { class: "picture", src: url, alt: `the artefact of #${c.id}` });
  img.addEventListener("error", async () => {
    const why = await fetch(url).then((r) => r.json()).then((b) => b.error)
      .catch(() => "no picture");
    img.replaceWith(h("p", { class: "note" }, why));
  });
  box.append(img);
  return box;
}

async function buildCandidate(main, run, id) {
  const [c, info] = await Promise.all([api(`/api/runs/${run}/candidates/${id}`),
                                       api(`/api/runs/${run}`)]);
  state.runs[run] = info;
  const title = h("h2", { id: "cand-title" }, `Candidate #${c.id} of ${info.name} `,
    `(${info.env}, ${info.better}) `,
    c.is_best ? h("span", { class: "badge best" }, "the best so far") : null,
    c.ok ? null : h("span", { class: "badge failed" }, c.failure));
  const parentNote = c.diff.against === null ? "" : ` #${c.diff.against}`;
  main.append(...[
    h("p", {}, h("a", { href: "#/" }, "\u2190 all runs")), title,
    h("div", { class: "cols" },
      h("div", {}, h("div", { id: "facts-box" }, facts(run, c)),
        h("h3", {}, "Re-verify its artefact"),
        c.verify ? pre(c.verify, { id: "verify" })
          : h("p", { class: "note" }, "no artefact: nothing to re-verify"),
        h("h3", {}, "Lineage (root first) and children"),
        h("div", { class: "tree", id: "cand-tree" })),
      h("div", {}, h("h3", {}, "Its artefact, drawn by the environment"), picture(run, c))),
    h("div", { class: "cols" },
      h("div", {}, h("h3", {}, `Program (${c.language || "code"})`),
        c.code === null ? h("p", { class: "note", id: "program" },
          c.initial ? "none: an initial state" : "none: the completion held no code block")
          : pre(c.code, { id: "program" })),
      h("div", {}, h("h3", {}, `Diff against its parent's program${parentNote}`),
        c.diff.note && c.diff.lines.length ? h("p", { class: "note" }, c.diff.note) : null,
        diffView(c.diff))),
    h("h3", {}, "Log"), pre(c.log, { id: "log" }),
    c.stdout ? [h("h3", {}, "Standard output (tail)"), pre(c.stdout)] : null,
    h("h3", {}, c.artifact_json === null ? "Artefact" :
      `Artefact (JSON, ${c.artifact_chars.toLocaleString()} characters` +
      `${c.artifact_chars > c.artifact_json.length ? ", the first part shown" : ""})`),
    pre(c.artifact_json === null ? "none" : c.artifact_json, { id: "artifact" }),
    c.completion ? h("details", {}, h("summary", {}, "The model's completion"),
                     pre(c.completion)) : null].flat().filter(Boolean));
  await loadTree($("cand-tree"), run, id);
}

async function updateCandidate(run, id) {  // the candidate is stored once; its family grows
  const c = await api(`/api/runs/${run}/candidates/${id}`);
  $("facts-box").replaceChildren(facts(run, c));
  await loadTree($("cand-tree"), run, id);
}

// --- routing, refresh and polling ------------------------------------------------------------

function route() {
  const m = location.hash.match(/^#\/run\/(\d+)\/candidate\/(\d+)/);
  return m ? { key: location.hash, run: +m[1], id: +m[2] } : { key: "overview" };
}

async function refresh() {
  const r = route();
  const main = $("main");
  let built = false;
  try {
    if (state.view !== r.key) {
      main.textContent = "";
      state.view = r.key;
      built = true;
      if (r.id === undefined) {
        buildOverview(main);
      } else {
        await buildCandidate(main, r.run, r.id);
        window.scrollTo(0, 0);
      }
    }
    if (r.id === undefined) await updateOverview();
    else if (!built) await updateCandidate(r.run, r.id);
    if ($("err")) $("err").remove();
  } catch (e) {
    if (built && r.id !== undefined) state.view = null;  // try to build it again next time
    if ($("err")) $("err").remove();
    main.prepend(h("p", { class: "error", id: "err" }, e.message));
  }
  state.refreshes += 1;
  document.body.dataset.refreshes = state.refreshes;
}

function queueRefresh() {
  state.queue = state.queue.then(refresh);
  return state.queue;
}

async function poll() {
  const status = $("status");
  try {
    const s = await api("/api/state");
    const key = JSON.stringify(s.runs.map((r) => [r.rev, r.writing, r.error]));
    const writing = s.runs.filter((r) => r.writing).length;
    status.className = "status";
    status.textContent = `live: ${s.runs.length} run(s), ${writing} writing; checked ` +
      `${new Date().toLocaleTimeString()}`;
    if (key !== state.stateKey) {
      state.stateKey = key;
      document.body.dataset.state = key;
      await queueRefresh();
    }
  } catch (e) {
    status.className = "status stale";
    status.textContent = `cannot reach the server (${e.message}); retrying`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

window.addEventListener("hashchange", () => queueRefresh());
poll();
