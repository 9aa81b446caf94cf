"""`discover ui RUN [RUN...]`: a live, read-only page of runs in the browser, and its JSON API.

The page (ui_static/: plain HTML, JS and SVG, no build step, nothing fetched from elsewhere) polls
/api/state and refetches what changed, so it follows a run while the run writes. Every request
opens the archive read-only (a WAL reader: it never blocks the run's commits) and reads one
snapshot, so a run killed and resumed, or started after the page, is simply seen as it is now.
The server is bottle (one module, no dependencies: routing, JSON and static files are all this
needs) on the standard library's threaded WSGI server.
"""

from __future__ import annotations

import difflib
import json
import socket
import sqlite3
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bottle

from discover.archive import SUMMARY_SORT, ArchiveError, CandidateNotFound
from discover.rundir import RunDir
from discover.views.inspection import (
    PROGRAM_SUFFIX,
    Run,
    better_text,
    brief,
    open_run,
    run_stats,
    tree_data,
    verify_command,
)
from discover.views.report import best_by_step, best_by_time, draw_artifact

STATIC = Path(__file__).with_name("ui_static")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
SORT_KEYS = tuple(SUMMARY_SORT)
MAX_ROWS = 5000  # per request of /candidates (page on with offset)
ARTIFACT_PREVIEW = 20_000  # characters of an artefact's JSON in /candidates/ID
_DRAW = threading.Lock()  # matplotlib is not thread-safe; pictures are drawn one at a time


# --- views: plain functions of an open run, returning what the API sends ----------------------

def writing(path: Path) -> bool | None:
    """Whether a `discover run` holds the run directory's lock now (None: cannot tell here).

    Read from /proc/locks rather than by trying the lock: a reader holding it even for an
    instant could make a run that starts then fail with 'in use by another discover run'."""
    try:
        inode = RunDir(path).lock_file.stat().st_ino
    except FileNotFoundError:
        return False
    try:
        locks = Path("/proc/locks").read_text()
    except OSError:
        return None
    return any(line.split()[1] == "FLOCK" and line.split()[5].endswith(f":{inode}")
               for line in locks.splitlines() if len(line.split()) > 5)


def revision(run: Run) -> str:
    """Changes whenever the run stores something (a step, the initial states)."""
    a = run.archive
    with a.snapshot():
        return f"{a.last_step()}:{a.count()}"


def samples_per_hour(m: dict) -> float | None:
    """The step's own figure when the run recorded one, else its samples over its seconds."""
    if m.get("samples_per_hour") is not None:
        return m["samples_per_hour"]
    seconds = sum((m.get("seconds") or {}).values())
    return 3600.0 * m["total"] / seconds if m.get("total") and seconds > 0 else None


def series(run: Run) -> dict:
    """Per-step curves: best so far by step and by wall time, valid rate and failure kinds,
    samples per hour, the learner's beta, KL and loss."""
    a = run.archive
    with a.snapshot():
        rows, steps = a.summary(), a.step_metrics()
    per_step = []
    for m in steps:
        learn = m.get("learner") or {}
        total = m.get("total", 0)
        per_step.append({
            "step": m["step"], "total": total, "valid": m.get("valid", 0),
            "valid_rate": m.get("valid", 0) / total if total else None,
            "failures": m.get("failures", {}), "version": m.get("version"),
            "mean_reward": m.get("mean_reward"), "seconds": sum((m.get("seconds") or {}).values()),
            "samples_per_hour": samples_per_hour(m), "time": m.get("time"),
            "learner": {k: learn.get(k) for k in ("beta", "kl", "loss", "skipped",
                                                "policy_kl", "logp_change", "copies")} if learn
            else None})
    return {"steps": per_step,
            "best_by_step": [{"step": s, "score": b["score"], "id": b["id"]}
                             for s, b in best_by_step(rows, steps)],
            "best_by_time": [{"t": t, "score": b["score"], "id": b["id"]}
                             for t, b in best_by_time(rows)],
            "started_at": min((r["created_at"] for r in rows), default=None)}


def candidates(run: Run, failure: str | None = None, step: int | None = None,
               version: int | None = None, min_score: float | None = None,
               max_score: float | None = None, sort: str = "reward", desc: bool = True,
               limit: int = 200, offset: int = 0) -> dict:
    """The candidate table: light rows, filtered (failure: 'valid', 'failed' or a failure kind;
    step; policy version; a score range, which leaves out what has no score), sorted (missing
    scores last either way) and paged."""
    if sort not in SORT_KEYS:
        raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}, got {sort!r}")
    if not (1 <= limit <= MAX_ROWS and offset >= 0):
        raise ValueError(f"limit must be 1..{MAX_ROWS} and offset >= 0")
    a = run.archive
    with a.snapshot():  # filtered, sorted and paged in SQL: a page costs the same at any size
        total, rows = a.summary_page(sort, desc, limit, offset, failure=failure, step=step,
                                     version=version, min_score=min_score, max_score=max_score)
        kinds, versions, steps = (a.distinct(c) for c in ("failure", "policy_version", "step"))
    return {"total": total, "offset": offset, "rows": rows, "failure_kinds": kinds,
            "policy_versions": versions, "steps": steps}


def verify_hint(run: Run, c_id: int) -> str:
    """The command that re-verifies the candidate's artefact (export's, with the run's
    environment options); through `discover export` when no artefact file was written."""
    stored = RunDir(run.path).artifact(c_id)
    if stored.is_file():
        return verify_command(run, stored)
    out = Path(f"export-{c_id}")
    return (f"discover export {run.path} {c_id} --out {out} && "
            f"{verify_command(run, out / 'artifact.json')}")


def program_diff(parent, c) -> dict:
    """A unified diff of the candidate's program against its parent's."""
    if parent is None:
        return {"against": None, "lines": [], "note": "an initial state: it has no parent"}
    if c.code is None:
        return {"against": parent.id, "lines": [], "note": "this candidate has no program"}
    note = ""
    if parent.code is None:
        note = (f"the parent #{parent.id} is an initial state with no program: every line "
                f"is new")
    lines = list(difflib.unified_diff((parent.code or "").splitlines(), c.code.splitlines(),
                                      f"#{parent.id}", f"#{c.id}", lineterm=""))
    if not lines and parent.code is not None:
        note = "the same program as its parent's"
    return {"against": parent.id, "lines": lines, "note": note}


def candidate(run: Run, cand_id: int) -> dict:
    """One candidate: program, diff against its parent's, artefact, scores, logs, lineage,
    children and the command that re-verifies it."""
    a = run.archive
    with a.snapshot():
        c = a.get(cand_id)
        parent = a.get(c.parent_id) if c.parent_id is not None else None
        chain, kids, best = a.lineage(cand_id), a.children(cand_id), a.best(1)
    art = None if c.artifact is None else json.dumps(c.artifact)
    return {**brief(c), "group_idx": c.group_idx, "gen_s": c.gen_s, "eval_s": c.eval_s,
            "metrics": c.metrics, "code": c.code, "language": run.language,
            "program_file": "program" + PROGRAM_SUFFIX.get(run.language or "", ".txt"),
            "log": c.log, "stdout": c.stdout if c.stdout != c.log else "",
            "completion": c.completion,
            "artifact_json": None if art is None else art[:ARTIFACT_PREVIEW],
            "artifact_chars": None if art is None else len(art),
            "is_best": bool(best) and best[0].id == c.id,
            "parent": None if parent is None else brief(parent),
            "diff": program_diff(parent, c),
            "lineage": [brief(x) for x in chain], "children": [brief(x) for x in kids],
            "verify": verify_hint(run, c.id) if c.ok and c.artifact is not None else None}


def run_info(i: int, path: Path, run: Run | None, error: str | None) -> dict:
    info = {"index": i, "path": str(path), "name": path.name, "writing": writing(path),
            "error": error}
    if run is not None:
        info.update(env=run.env, direction=run.direction, better=better_text(run),
                    env_options=run.env_options, rev=revision(run), stats=run_stats(run))
    return info


# --- the HTTP side ----------------------------------------------------------------------------

class Runs:
    """The run directories served; each request opens its archive afresh, read-only."""

    def __init__(self, paths: list[str | Path]) -> None:
        self.paths = [Path(p) for p in paths]

    @contextmanager
    def open(self, i: int) -> Iterator[Run]:
        if not 0 <= i < len(self.paths):
            raise bottle.HTTPError(404, f"no run {i}: runs are numbered 0..{len(self.paths) - 1}")
        try:
            run = open_run(self.paths[i])
        except (ArchiveError, sqlite3.Error) as e:  # not started yet, or not a run
            raise bottle.HTTPError(503, f"{self.paths[i]}: {e}") from e
        try:
            yield run
        except CandidateNotFound as e:
            raise bottle.HTTPError(404, str(e)) from e
        finally:
            run.archive.close()

    def info(self, i: int) -> dict:
        try:
            with self.open(i) as run:
                return run_info(i, self.paths[i], run, None)
        except bottle.HTTPError as e:
            return run_info(i, self.paths[i], None, e.body)


def _number(value: str | None, name: str, kind: type = int):
    if value in (None, ""):
        return None
    try:
        x = kind(value)
    except ValueError:
        x = None
    if x is None or x != x:  # (NaN)
        what = "an integer" if kind is int else "a number"
        raise bottle.HTTPError(400, f"{name} must be {what}, got {value!r}")
    return x


def _int(value: str | None, name: str) -> int | None:
    return _number(value, name, int)


def make_app(paths: list[str | Path]) -> bottle.Bottle:
    runs = Runs(paths)
    app = bottle.Bottle()

    def error_json(err: bottle.HTTPError) -> str:
        bottle.response.content_type = "application/json"
        return json.dumps({"error": err.body, "status": err.status_code})

    app.default_error_handler = error_json

    @app.get("/")
    def index():
        return bottle.static_file("index.html", root=STATIC, headers={"Cache-Control": "no-cache"})

    @app.get("/static/<name>")
    def static(name: str):
        return bottle.static_file(name, root=STATIC, headers={"Cache-Control": "no-cache"})

    @app.get("/api/runs")
    def api_runs():
        return {"runs": [runs.info(i) for i in range(len(runs.paths))]}

    @app.get("/api/state")
    def api_state():
        out = []
        for i, path in enumerate(runs.paths):
            try:
                with runs.open(i) as run:
                    rev, error = revision(run), None
            except bottle.HTTPError as e:
                rev, error = None, e.body
            out.append({"index": i, "rev": rev, "writing": writing(path), "error": error})
        return {"runs": out}

    @app.get("/api/runs/<i:int>")
    def api_run(i: int):
        if not 0 <= i < len(runs.paths):
            raise bottle.HTTPError(404, f"no run {i}: runs are numbered 0..{len(runs.paths) - 1}")
        return runs.info(i)

    @app.get("/api/runs/<i:int>/series")
    def api_series(i: int):
        with runs.open(i) as run:
            return series(run)

    @app.get("/api/runs/<i:int>/candidates")
    def api_candidates(i: int):
        q = bottle.request.query
        limit, offset = _int(q.get("limit"), "limit"), _int(q.get("offset"), "offset")
        with runs.open(i) as run:
            try:
                return candidates(run, failure=q.get("failure") or None,
                                  step=_int(q.get("step"), "step"),
                                  version=_int(q.get("version"), "version"),
                                  min_score=_number(q.get("min_score"), "min_score", float),
                                  max_score=_number(q.get("max_score"), "max_score", float),
                                  sort=q.get("sort") or "reward",
                                  desc=q.get("order", "desc") != "asc",
                                  limit=200 if limit is None else limit,
                                  offset=0 if offset is None else offset)
            except ValueError as e:
                raise bottle.HTTPError(400, str(e)) from e

    @app.get("/api/runs/<i:int>/candidates/<cid:int>")
    def api_candidate(i: int, cid: int):
        with runs.open(i) as run:
            return candidate(run, cid)

    @app.get("/api/runs/<i:int>/candidates/<cid:int>/picture.png")
    def api_picture(i: int, cid: int):
        with runs.open(i) as run, _DRAW:
            png, note = draw_artifact(run, run.archive.get(cid))
        if png is None:
            raise bottle.HTTPError(404, note)
        bottle.response.content_type = "image/png"
        return png

    @app.get("/api/runs/<i:int>/tree")
    def api_tree(i: int):
        q = bottle.request.query
        depth = _int(q.get("depth"), "depth")
        width = _int(q.get("width"), "width")
        with runs.open(i) as run:
            try:
                return tree_data(run, _int(q.get("id"), "id"), depth=1 if depth is None
                                 else depth, width=8 if width is None else width)
            except ArchiveError as e:  # no valid candidate yet
                raise bottle.HTTPError(404, str(e)) from e

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a poll in flight does not keep Ctrl-C waiting


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # one line per poll is noise
        pass


def serve(paths: list[str | Path], host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the page until interrupted; prints its address (port 0: any free port)."""
    missing = [str(p) for p in paths if not Path(p).is_dir()]
    if missing:
        raise FileNotFoundError(f"no such run directory: {', '.join(missing)}")
    for p in paths:
        if not RunDir(p).holds_run():
            print(f"discover ui: {p} holds no archive yet; the page shows it once the run "
                  f"stores its first candidates", file=sys.stderr)
    if host not in LOCAL_HOSTS:
        print(f"discover ui: WARNING: serving on {host}, not only this machine: anyone who "
              f"can reach it on port {port} can read these runs (programs, artefacts, logs, "
              f"paths); there is no authentication", file=sys.stderr)
    _Server.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        server = make_server(host, port, make_app(paths), server_class=_Server,
                             handler_class=_QuietHandler)
    except OSError as e:
        raise OSError(e.errno, f"cannot serve on {host}:{port}: {e.strerror} (another port: "
                               f"--port)") from e
    shown = f"[{host}]" if ":" in host else host
    print(f"discover ui: http://{shown}:{server.server_port}/  (read-only; Ctrl-C stops)",
          flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
