"""Inspecting runs: best, show, tree, export, compare and report on real run directories.

Fast tests build a run directory with the archive API (a real SQLite file, toy artefacts scored
by the real toy environment); the slow ones drive every command as a user would, on a run of the
real model, while it writes and after it stopped, and open the report in headless Chromium.
"""

import base64
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fake_run import fake_run
from matplotlib.image import imread

from discover import cli
from discover.archive import Archive
from discover.views.report import PLOTS, write_report

DISCOVER = [sys.executable, "-m", "discover.cli"]
FIGURES = {"best_by_step", "best_by_time", "rewards", "valid_rate", "learner", "lineage",
           "artifact"}

# Each step: (index of the parent among the step's earlier best, children); a child is a toy
# artefact (valid) or a failure kind. The best, [9, 9, 9] (27), is three generations deep.
PLAN = [
    [[[1, 2], "crash", [5]]],
    [[[5, 5, 1], "no_code", [4]]],
    [[[9, 9, 9], "syntax_error", [9, 9]], [[3], [2, 2]]],
]
NO_LEARNER = {"learner": {"method": "none"}}


def run_main(capsys, *args) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def run(tmp_path):
    path = tmp_path / "run"
    return path, fake_run(path, PLAN, learning=True)


def test_best_is_read_only(run, capsys):
    path, facts = run
    def files():  # SQLite's own -wal/-shm files aside (a WAL reader may create them)
        return sorted(p.relative_to(path) for p in path.rglob("*")
                      if not p.name.endswith(("-wal", "-shm")))

    before = files()
    rc, out, _ = run_main(capsys, "best", path, "-k", "10")
    assert rc == 0
    rows = [line.split() for line in out.splitlines()[2:]]
    assert int(rows[0][1]) == facts["best_id"] and float(rows[0][3]) == facts["best_score"]
    assert "in the archive: discover export" in out  # no artifacts/ files in this run
    assert files() == before


def test_show_prints_code_artefact_scores_and_lineage(run, capsys):
    path, facts = run
    rc, out, _ = run_main(capsys, "show", path, facts["best_id"])
    assert rc == 0
    a = Archive(path / "archive.sqlite", readonly=True)
    best = a.get(facts["best_id"])
    assert "status: valid" in out and f"score: {best.score:g}" in out
    assert all(line in out for line in best.code.splitlines())
    assert json.dumps(best.artifact) in out
    lineage = re.findall(r"^  #(\d+) ", out, re.M)
    assert [int(i) for i in lineage] == [c.id for c in a.lineage(best.id)]
    assert len(lineage) == 4  # root, [5], [5, 5, 1], [9, 9, 9]
    failed = next(c for c in a.children(a.lineage(best.id)[1].id) if not c.ok)
    rc, out, _ = run_main(capsys, "show", path, failed.id)
    assert rc == 0 and f"failed ({failed.failure})" in out and failed.log in out
    rc, _, err = run_main(capsys, "show", path, 999)
    assert rc == 2 and "no candidate 999" in err


def test_tree_shows_the_lineage_siblings_and_children(run, capsys):
    path, facts = run
    rc, out, _ = run_main(capsys, "tree", path)
    assert rc == 0
    a = Archive(path / "archive.sqlite", readonly=True)
    chain = a.lineage(facts["best_id"])
    lines = out.splitlines()
    assert "(the best so far)" in lines[0]
    for g, c in enumerate(chain):  # one line per generation, indented one level deeper
        assert lines[1 + g].lstrip(" └─").startswith(f"#{c.id} ")
    sib = [c for c in a.children(chain[0].id) if c.id != chain[1].id]
    assert f"{len(sib)} siblings: {sum(c.ok for c in sib)} valid" in lines[2]
    # The root's subtree to depth 2: its children, then theirs.
    rc, out, _ = run_main(capsys, "tree", path, chain[0].id, "--depth", "2")
    shown = {int(i) for i in re.findall(r"#(\d+) ", out)}
    want = {c.id for c in a.children(chain[0].id)} | {
        k.id for c in a.children(chain[0].id) for k in a.children(c.id)}
    assert rc == 0 and want <= shown


def test_export_reverifies_to_the_same_score(run, tmp_path, capsys):
    path, facts = run
    out_dir = tmp_path / "export"
    rc, out, _ = run_main(capsys, "export", path, "--out", out_dir)
    assert rc == 0
    meta = json.loads((out_dir / "candidate.json").read_text())
    assert meta["id"] == facts["best_id"] and meta["env"] == "toy"
    assert [x["id"] for x in meta["lineage"]][-1] == facts["best_id"]
    prog = (out_dir / "program.py").read_text()
    assert prog == Archive(path / "archive.sqlite", readonly=True).get(facts["best_id"]).code
    rc, out, _ = run_main(capsys, "verify", "toy", out_dir / "artifact.json")
    assert rc == 0 and float(out) == facts["best_score"] == meta["score"]
    rc, _, err = run_main(capsys, "export", path, "--out", out_dir)  # never overwrites
    assert rc == 2 and "not an empty folder" in err


def test_compare_side_by_side(tmp_path, capsys):
    a_facts = fake_run(tmp_path / "a", PLAN, learning=True)
    fake_run(tmp_path / "b", PLAN, config=NO_LEARNER)
    rc, out, _ = run_main(capsys, "compare", tmp_path / "a", tmp_path / "b")
    assert rc == 0
    head, row_a, row_b = out.splitlines()[:3]
    assert "samples to best" in head and "valid" in head and "samples/h" in head
    cells = row_a.split()
    samples = sum(len(g) for step in PLAN for g in step)
    per_hour = f"{3600 * samples / (len(PLAN) * 1.7):.0f}"  # each step's seconds sum to 1.7
    assert cells[2:6] == [str(len(PLAN)), str(samples), per_hour,
                          f"{100 * a_facts['valid_rate']:.1f}%"]
    assert float(cells[6]) == a_facts["best_score"] and int(cells[7]) == a_facts["best_id"]
    assert int(cells[9]) == a_facts["best_id"] - 1  # generated ids up to the best (1: initial)
    assert row_b.split()[2:] == cells[2:-1] + [row_b.split()[-1]]


def png_pixels(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    return imread(io.BytesIO(data), format="png")


def images(html: str) -> dict[str, bytes]:
    """figure id -> the PNG bytes of its embedded <img>."""
    found = re.findall(r"<figure id='(\w+)'><h2>[^<]*</h2>\s*"
                       r"<img [^>]*src='data:image/png;base64,([^']+)'", html)
    return {name: base64.b64decode(data) for name, data in found}


def check_report(html_path: Path, learner: bool) -> dict[str, bytes]:
    html = html_path.read_text()
    imgs = images(html)
    want = FIGURES if learner else FIGURES - {"learner"}
    assert set(imgs) == want
    for name, data in imgs.items():
        px = png_pixels(data)
        assert px.ndim == 3 and px.shape[0] > 100 and px.shape[1] > 100
        assert px.reshape(-1, px.shape[2]).std(axis=0).max() > 0.01, f"{name} is blank"
        assert (html_path.parent / f"{name}.png").read_bytes() == data
    if not learner:
        assert "no learner" in html
    assert "http://" not in html and "https://" not in html  # self-contained
    return imgs


def test_report_has_every_plot(run, tmp_path, capsys):
    path, facts = run
    rc, out, _ = run_main(capsys, "report", path)
    assert rc == 0 and out.strip().endswith("report.html")
    check_report(path / "report" / "report.html", learner=True)
    html = (path / "report" / "report.html").read_text()
    assert f"#{facts['best_id']} (step {len(PLAN) - 1})" in html
    other = tmp_path / "b"
    fake_run(other, PLAN, config=NO_LEARNER)
    check_report(write_report(other, tmp_path / "elsewhere"), learner=False)
    assert not (other / "report").exists()
    assert len(PLOTS) == len(FIGURES)


def test_progress_line_shows_every_figure():
    from discover.progress import Progress, StepReport

    buf = io.StringIO()
    Progress("toy", "max", stream=buf)(StepReport(
        step=0, steps=4, best_score=27.0, valid=3, total=4, tokens=500,
        seconds={"generate": 10.0, "score": 2.0, "learn": 5.0}, learner={"loss": 0.5}))
    line = buf.getvalue()
    for part in ("step 1/4", "best 27", "847 samples/h", "valid 3/4", "75%", "50 tok/s",
                 "2.0 eval/s", "gen 10s", "score 2s", "learn 5s"):
        assert part in line, part


# --- on a real run of the model ----------------------------------------------------------------

LIVE = ["run", "toy", "--steps", "50", "--groups", "1", "--group-size", "2",
        "--set", "policy.max_new_tokens=32", "--learner", "entropic"]
RUN_WRITES = {"archive.sqlite", "archive.sqlite-wal", "archive.sqlite-shm", "config.toml",
              "metrics.jsonl", "artifacts", "adapters", ".lock"}


def cli_run(*args, timeout=300):
    return subprocess.run([*DISCOVER, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def wait_steps(path: Path, n: int, proc, timeout: float = 900) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the run stopped early: " + log_tail(path)
        try:
            if Archive(path / "archive.sqlite", readonly=True).last_step() >= n - 1:
                return
        except Exception:
            pass  # not created yet
        time.sleep(0.5)
    pytest.fail(f"the run did not finish {n} steps in {timeout} s")


def log_tail(path: Path) -> str:
    return (path.parent / "run.log").read_text()[-3000:]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One real run for the module: the embedded model, the sandbox, SQLite, a local Ray.
    (Its output goes to a file: a full pipe would stall the run.)"""
    path = tmp_path_factory.mktemp("live") / "run"
    with open(path.parent / "run.log", "w") as log:
        proc = subprocess.Popen([*DISCOVER, *LIVE, "--run-dir", str(path)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    yield path, proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="module")
def stopped(live):
    """The live run, interrupted (Ctrl-C) once it has finished two steps."""
    path, proc = live
    if proc.poll() is None:
        wait_steps(path, 2, proc)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=600)  # it finishes the step in progress: minutes on a loaded machine
        assert proc.returncode == 130, log_tail(path)
        assert "finished steps are stored" in log_tail(path)
    return path


@pytest.mark.slow
def test_commands_while_the_run_writes(live, tmp_path):
    path, proc = live
    wait_steps(path, 1, proc)
    best = cli_run("best", path, "-k", "1000")
    assert best.returncode == 0, best.stderr
    assert "in the archive" in best.stdout  # the initial state has no file ...
    assert not (path / "artifacts" / "1.json").exists()  # ... and `best` did not write one
    a = Archive(path / "archive.sqlite", readonly=True)
    ids = [r["id"] for r in a.summary()]
    for cid in ids[:3]:
        r = cli_run("show", path, cid)
        assert r.returncode == 0 and f"candidate {cid} of" in r.stdout, r.stderr
    tree = cli_run("tree", path)
    assert tree.returncode == 0 and "lineage of #" in tree.stdout, tree.stderr
    exp = cli_run("export", path, "--out", tmp_path / "export")
    assert exp.returncode == 0, exp.stderr
    assert (tmp_path / "export" / "artifact.json").is_file()
    cmp_ = cli_run("compare", path, path)
    assert cmp_.returncode == 0 and cmp_.stdout.count(str(path)) == 2, cmp_.stderr
    rep = cli_run("report", path, "--out", tmp_path / "report")
    assert rep.returncode == 0, rep.stderr
    check_report(tmp_path / "report" / "report.html", learner=True)
    assert proc.poll() is None, "the run finished before the commands did"
    assert set(os.listdir(path)) <= RUN_WRITES  # the readers wrote nothing into the run


@pytest.mark.slow
def test_commands_on_a_stopped_run(stopped, tmp_path):
    path = stopped
    a = Archive(path / "archive.sqlite", readonly=True)
    assert a.last_step() >= 1 and a.integrity_check() == []
    best = cli_run("best", path, "-k", "3")
    assert best.returncode == 0, best.stderr
    top = a.best(1)[0]
    # every candidate, failures included
    for row in a.summary():
        r = cli_run("show", path, row["id"])
        assert r.returncode == 0, r.stderr
        assert ("status: valid" if row["ok"] else f"failed ({row['failure']})") in r.stdout
    tree = cli_run("tree", path, "--depth", "2")
    assert tree.returncode == 0 and f"#{top.id} " in tree.stdout
    # export the best; it re-verifies to the same score
    out = tmp_path / "export"
    exp = cli_run("export", path, "--out", out)
    assert exp.returncode == 0, exp.stderr
    ver = cli_run("verify", "toy", out / "artifact.json")
    assert ver.returncode == 0, ver.stderr
    assert float(ver.stdout) == pytest.approx(top.score, abs=1e-9)
    other = tmp_path / "synthetic"
    facts = fake_run(other, PLAN, learning=True)
    cmp_ = cli_run("compare", path, other)
    assert cmp_.returncode == 0, cmp_.stderr
    rows = cmp_.stdout.splitlines()
    gen = [r for r in a.summary() if not r["initial"]]
    assert f"{100 * sum(r['ok'] for r in gen) / len(gen):.1f}%" in rows[1]
    assert f"{facts['best_score']:.10g}" in rows[2]
    # the report, opened in a real browser
    rep = cli_run("report", path)
    assert rep.returncode == 0, rep.stderr
    html = path / "report" / "report.html"
    check_report(html, learner=True)
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: scripts/test.sh installs it (apt-get install "
                        "chromium)")
        pytest.skip("chromium is not installed (scripts/test.sh installs it)")
    shot = tmp_path / "report.png"
    r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1200,4000",
                        html.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    px = png_pixels(shot.read_bytes())
    assert px.shape[:2] == (4000, 1200)
    # non-blank: not one colour, and plots (not just text) drawn: many distinct colours
    flat = (px[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    assert flat.std(axis=0).max() > 5
    assert len(np.unique(flat[:: 7], axis=0)) > 50
    if os.environ.get("DISCOVER_KEEP_SCREENSHOT"):  # to look at it
        shutil.copy(shot, os.environ["DISCOVER_KEEP_SCREENSHOT"])
