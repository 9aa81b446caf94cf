"""`discover ui`: the JSON API over real archives, served by the real `discover ui` process; and
the page in headless Chromium following a real `discover run` while it writes, is killed and
resumes."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from fake_run import fake_run
from sessions import kill_session

from discover.archive import Archive
from discover.views.ui import samples_per_hour

DISCOVER = [sys.executable, "-m", "discover.cli"]
# A short lineage: the initial state [0]; step 0 gives [1, 2] (3) beside a crash; step 1, from
# [1, 2], gives [5, 5, 1] (11) beside a syntax error. The best is two generations deep.
PLAN = [[[[1, 2], "crash"]], [[[5, 5, 1], "syntax_error"]]]


def seeded(learner: str = "none") -> dict:
    """fake_run's arguments for a run directory as a short `discover run toy` (1 group of 2)
    leaves it; `discover run toy --run-dir RD --resume` continues it."""
    return {"plan": PLAN, "files": True, "seconds": {"generate": 3.0, "score": 0.6},
            "config": {"run": {"steps": len(PLAN), "groups": 1, "group_size": 2},
                       "policy": {"max_new_tokens": 48}, "ray": {"scorer_slots": 1},
                       "learner": {"method": learner}}}


# --- the `discover ui` process ----------------------------------------------------------------

@contextmanager
def ui_server(*runs: Path, extra: tuple[str, ...] = ()):
    """`discover ui RUN... --port 0` in its own process; yields (base URL, stderr lines)."""
    proc = subprocess.Popen([*DISCOVER, "ui", *map(str, runs), "--port", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, line = time.monotonic() + 120, ""
        while time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 0.5)[0]:
                line = proc.stdout.readline()
                break
        match = re.search(r"(http://\S+/)", line)
        assert match, f"no address printed: {line!r} {proc.stderr.read() if proc.poll() else ''}"
        yield match.group(1).rstrip("/"), proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(base: str, path: str) -> tuple[int, dict | bytes]:
    try:
        with urllib.request.urlopen(base + path, timeout=60) as r:
            body = r.read()
            return r.status, json.loads(body) if r.headers.get_content_type() == \
                "application/json" else body
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def files(rd: Path) -> dict[str, str]:
    """Every file of a run directory and its hash, SQLite's own -wal/-shm aside."""
    return {str(p.relative_to(rd)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(rd.rglob("*")) if p.is_file()
            and not p.name.endswith(("-wal", "-shm"))}


def test_samples_per_hour_prefers_the_recorded_figure():
    m = {"total": 8, "seconds": {"generate": 20.0, "score": 8.0, "learn": 2.0}}
    assert samples_per_hour(m) == pytest.approx(8 / 30 * 3600)
    assert samples_per_hour({**m, "samples_per_hour": 123.0}) == 123.0
    assert samples_per_hour({"total": 0, "seconds": {}}) is None


def test_api_serves_a_run_read_only(tmp_path):
    rd = tmp_path / "run"
    facts = fake_run(rd, **seeded())
    empty = tmp_path / "not-started"
    empty.mkdir()
    before = files(rd)
    a = Archive(rd / "archive.sqlite", readonly=True)
    with ui_server(rd, empty) as (base, proc):
        status, runs = get(base, "/api/runs")
        assert status == 200
        r0, r1 = runs["runs"]
        assert r0["env"] == "toy" and r0["writing"] is False and r0["error"] is None
        assert r0["stats"]["best_id"] == facts["best_id"] and r0["stats"]["steps"] == len(PLAN)
        assert "no archive" in r1["error"] and "env" not in r1  # a run not started yet
        status, st = get(base, "/api/state")
        assert st["runs"][0]["rev"] == f"{len(PLAN) - 1}:{a.count()}"
        assert st["runs"][1]["rev"] is None
        assert get(base, "/api/runs/1/series")[0] == 503

        _, series = get(base, "/api/runs/0/series")
        assert [s["step"] for s in series["steps"]] == list(range(len(PLAN)))
        assert series["steps"][0]["samples_per_hour"] == pytest.approx(2 / 3.6 * 3600)
        assert series["steps"][1]["failures"] == {"syntax_error": 1}
        assert [(b["step"], b["score"]) for b in series["best_by_step"]] == \
            [(-1, 0.0), (0, 3.0), (1, 11.0)]
        assert series["best_by_time"][-1]["id"] == facts["best_id"]

        # the table: sorted and filtered as the archive's own rows say
        rows = a.summary()
        _, t = get(base, "/api/runs/0/candidates?sort=score&order=asc")
        scored = sorted((r for r in rows if r["score"] is not None),
                        key=lambda r: (r["score"], r["id"]))
        assert [r["id"] for r in t["rows"]] == [r["id"] for r in scored] + \
            [r["id"] for r in rows if r["score"] is None]
        assert t["failure_kinds"] == ["crash", "syntax_error"] and t["total"] == len(rows)
        _, t = get(base, "/api/runs/0/candidates?failure=crash")
        assert [r["failure"] for r in t["rows"]] == ["crash"]
        _, t = get(base, "/api/runs/0/candidates?failure=valid&step=1&version=0")
        assert [r["id"] for r in t["rows"]] == [facts["best_id"]]
        _, t = get(base, "/api/runs/0/candidates?min_score=2.5&max_score=11")
        assert sorted(r["score"] for r in t["rows"]) == [3.0, 11.0]
        _, t = get(base, "/api/runs/0/candidates?sort=id&order=asc&limit=2&offset=1")
        assert [r["id"] for r in t["rows"]] == [2, 3] and t["total"] == len(rows)
        for bad, word in (("sort=nope", "sort must be one of"), ("step=x", "step must be an "
                          "integer"), ("limit=0", "limit must be"),
                          ("min_score=nan", "min_score must be a number")):
            status, err = get(base, f"/api/runs/0/candidates?{bad}")
            assert status == 400 and word in err["error"]

        # a candidate: its program, the diff against its parent's, its family, how to verify
        best = a.get(facts["best_id"])
        parent = a.get(best.parent_id)
        _, c = get(base, f"/api/runs/0/candidates/{best.id}")
        assert c["code"] == best.code and c["is_best"] and c["parent"]["id"] == parent.id
        assert c["diff"]["lines"] == list(difflib.unified_diff(
            parent.code.splitlines(), best.code.splitlines(), f"#{parent.id}", f"#{best.id}",
            lineterm=""))
        assert f"+    return {PLAN[1][0][0]!r}" in c["diff"]["lines"]
        assert [x["id"] for x in c["lineage"]] == [x.id for x in a.lineage(best.id)]
        assert json.loads(c["artifact_json"]) == best.artifact and c["log"] == best.log
        verify = subprocess.run(c["verify"], shell=True, capture_output=True, text=True,
                                cwd=tmp_path, timeout=300,
                                env={**os.environ, "PATH": f"{Path(sys.executable).parent}:"
                                     f"{os.environ['PATH']}"})
        assert verify.returncode == 0 and float(verify.stdout) == best.score, verify.stderr
        _, first = get(base, f"/api/runs/0/candidates/{parent.id}")
        assert "initial state with no program" in first["diff"]["note"]
        _, initial = get(base, "/api/runs/0/candidates/1")
        assert initial["diff"]["against"] is None and initial["initial"]
        assert initial["verify"].startswith(f"discover export {rd} 1 --out export-1 && ")
        _, failed = get(base, f"/api/runs/0/candidates/{best.id + 1}")
        assert failed["failure"] == "syntax_error" and failed["verify"] is None
        assert get(base, "/api/runs/0/candidates/999")[0] == 404
        assert get(base, "/api/runs/7")[0] == 404

        status, png = get(base, f"/api/runs/0/candidates/{best.id}/picture.png")
        assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
        status, err = get(base, f"/api/runs/0/candidates/{best.id + 1}/picture.png")
        assert status == 404 and "no artefact" in err["error"]

        _, tree = get(base, "/api/runs/0/tree?depth=2")
        assert tree["target"] == tree["best"] == best.id
        assert [n["id"] for n in tree["chain"]] == [x.id for x in a.lineage(best.id)]
        assert tree["chain"][-1]["siblings"] == 1 and tree["chain"][-1]["siblings_valid"] == 0
        _, tree = get(base, "/api/runs/0/tree?id=1&depth=1&width=1")
        assert len(tree["descendants"]["children"]) == 1 and tree["descendants"]["more"] == 1

        status, page = get(base, "/")
        assert status == 200 and b"/static/app.js" in page
        for name in ("app.js", "plot.js", "style.css"):  # nothing fetched from elsewhere
            status, body = get(base, f"/static/{name}")
            body = body.replace(b'"http://www.w3.org/2000/svg"', b"")  # a name, not a fetch
            assert status == 200 and b"http" not in body and b"//cdn" not in body
        assert get(base, "/static/../ui.py")[0] == 404
    assert files(rd) == before  # nothing written into the run directory


def test_ui_refuses_a_missing_directory_and_warns_off_localhost(tmp_path):
    r = subprocess.run([*DISCOVER, "ui", str(tmp_path / "nope")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "no such run directory" in r.stderr
    rd = tmp_path / "run"
    fake_run(rd, **seeded())
    with ui_server(rd, extra=("--host", "0.0.0.0")) as (base, proc):
        assert get(base.replace("0.0.0.0", "127.0.0.1"), "/api/state")[0] == 200
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)  # (20 s was too short at load 18)
    assert "WARNING: serving on 0.0.0.0" in err and "no authentication" in err


# --- the page, in Chromium, following a real run -----------------------------------------------

BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: scripts/test.sh installs it (apt-get install "
                        "chromium)")
        pytest.skip("chromium is not installed (scripts/test.sh installs it)")
    return path


class Launch:
    """`discover run ...` in its own session (Ray's processes with it), to be killed whole."""

    def __init__(self, args: list[str], tmpdir: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [*DISCOVER, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True, env={**os.environ, "TMPDIR": tmpdir})
        threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True).start()

    def kill(self) -> None:
        """SIGKILL every process of its session, as a crash or `kill -9` would."""
        kill_session(self.proc.pid)
        self.proc.wait()


def last_step(rd: Path) -> int:
    with Archive(rd / "archive.sqlite", readonly=True) as a:
        return a.last_step()


def wait_until(what: str, ok, timeout: float, launch: Launch | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if launch is not None and launch.proc.poll() is not None:
            pytest.fail(f"the run ended (rc {launch.proc.returncode}) before {what}:\n" +
                        "\n".join(launch.lines[-20:]))
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def wait_page(page, js: str, what: str, launch: Launch, timeout_s: float = 60,
              running: bool = True) -> None:
    """Wait for a condition in the page (failing early if the run, `running`, ends); on
    failure, say what the page and the run showed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            page.wait_for_function(js, timeout=1000)
            return
        except sync_api_errors() as e:
            ended = running and launch.proc.poll() is not None
            if ended or time.monotonic() > deadline:
                pytest.fail(f"the page never showed {what} ({type(e).__name__}); page status: "
                            f"{page.inner_text('#status')!r}; runs: "
                            f"{page.inner_text('#runs')!r}; the run (rc {launch.proc.poll()}):"
                            "\n" + "\n".join(launch.lines[-15:]))


def sync_api_errors() -> type[Exception]:
    from playwright.sync_api import TimeoutError

    return TimeoutError


@pytest.mark.slow
def test_page_follows_a_real_run_that_is_killed_and_resumed(tmp_path):
    """A real `discover run toy` (embedded model, 1 group of 2, 48 tokens, the entropic
    learner) continues a seeded run while the page is open: the page loads, the best
    candidate's program and diff show on a click, each step the run commits reaches the
    curves without a reload, and so do the steps of the run resumed after a SIGKILL."""
    chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="the dev extra installs it")
    rd = tmp_path / "run"
    facts = fake_run(rd, **seeded("entropic"))
    work = tempfile.mkdtemp(prefix="dui")  # short: Ray's socket paths must fit 107 bytes
    resume = ["run", "toy", "--run-dir", str(rd), "--resume", "--steps", str(len(PLAN) + 3)]
    launch = Launch(resume, work)  # starts while the page loads: the model takes a while
    with ui_server(rd) as (base, _), sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium(), headless=True,
            args=BROWSER_FLAGS, viewport={"width": 1400, "height": 1000})
        try:
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/?poll=300")
            curve = '#chart-best-step g.series[data-key="0"]'
            page.wait_for_selector(curve, timeout=60_000)
            page.evaluate("window.sameDocument = 'yes'")  # gone if the page ever reloads

            def shown_step() -> int:
                return int(page.get_attribute(curve, "data-last-x") or -2)

            # the best candidate: its program and the diff against its parent's program
            page.click("#cands tr.best", timeout=60_000)
            page.wait_for_selector("#diff .add", timeout=60_000)
            cid = int(re.search(r"#(\d+)", page.inner_text("#cand-title")).group(1))
            with Archive(rd / "archive.sqlite", readonly=True) as a:
                c = a.get(cid)
                parent = a.get(c.parent_id)
                running_best = [r["id"] for r in a.summary() if r["ok"]]
            assert cid == facts["best_id"] or (cid in running_best and c.reward >= 11)
            assert page.inner_text("#program").strip() == c.code.strip()
            want = [ln for ln in difflib.unified_diff((parent.code or "").splitlines(),
                                                      c.code.splitlines(), lineterm="")
                    if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---"))]
            got = page.eval_on_selector_all("#diff .add, #diff .del",
                                            "els => els.map(e => e.textContent)")
            assert got == want and want
            assert "the best so far" in page.inner_text("#cand-title")
            page.wait_for_function("document.querySelector('#picture img')?.naturalWidth > 0")
            assert page.inner_text("#verify").startswith("discover verify toy ")
            if os.environ.get("DISCOVER_KEEP_SCREENSHOT"):  # to look at it
                page.screenshot(path=os.environ["DISCOVER_KEEP_SCREENSHOT"], full_page=True)

            # back to the curves: the run commits a step, the page shows it without a reload
            page.click("text=all runs")
            wait_page(page, "document.querySelector('#runs .badge.writing')",
                      "the run writing (it holds the run directory's lock)", launch, 120)
            assert shown_step() == last_step(rd)
            first = last_step(rd) + 1
            wait_until(f"step {first} committed", lambda: last_step(rd) >= first, 600, launch)
            wait_page(page, f"document.querySelector('{curve}')?.getAttribute('data-last-x') "
                      f">= {first}", f"step {first} on the curve", launch)
            assert page.get_attribute("#chart-valid-0 g.bars", "data-last-x") == str(first)
            assert page.get_attribute('#chart-beta g.series[data-key="0"]', "data-n") != "0"

            # killed mid-run: the page says it stopped; resumed: the next step arrives too
            launch.kill()
            wait_page(page, "document.querySelector('#runs .badge.stopped')",
                      "the killed run stopped", launch, running=False)
            launch = Launch(resume, work)
            second = last_step(rd) + 1
            wait_until(f"step {second} after the resume", lambda: last_step(rd) >= second, 600,
                       launch)
            wait_page(page, f"document.querySelector('{curve}')?.getAttribute('data-last-x') "
                      f">= {second}", f"step {second} on the curve", launch)
            assert page.evaluate("window.sameDocument") == "yes"
            assert int(page.get_attribute("#chart-samples-per-hour g.series", "data-n")) >= 4
            assert errors == []
        finally:
            ctx.close()
            launch.kill()
            shutil.rmtree(work, ignore_errors=True)
