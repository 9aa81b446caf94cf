"""Problem folders brought as they are (OpenEvolve's and ShinkaEvolve's shapes): read, judged by
their own evaluator in the real sandbox, run with the embedded model, exported both ways."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from discover.environment import InvalidOptions
from discover.problem_folder import FolderEnvironment, read_folder
from discover.registry import canonical_name, load_environment
from tests.folders import (
    FM_EVALUATOR,
    FM_INITIAL,
    openevolve_folder,
    shinka_folder,
    write,
)

DISCOVER = [sys.executable, "-m", "discover.cli"]
GOOD = "def run_search():\n    return 1.5, -0.5\n"


def test_both_shapes_are_read_and_judged_by_their_evaluator(tmp_path):
    oe = read_folder(openevolve_folder(tmp_path / "fm"))
    assert (oe.shape, oe.evaluator, oe.initial) == ("openevolve", "evaluator.py",
                                                    "initial_program.py")
    assert "1 / f(x, y)" in oe.statement and oe.timeout_s == 20 and oe.parallel == 2
    assert not oe.cascade and oe.notes == ()
    sh = read_folder(shinka_folder(tmp_path / "pack"))
    assert (sh.shape, sh.evaluator, sh.initial) == ("shinka", "evaluate.py", "initial.py")
    assert "Three circles" in sh.statement  # no task message in a config: the README

    env = load_environment(canonical_name(str(tmp_path / "fm")))
    assert isinstance(env, FolderEnvironment) and env.direction == "max"
    assert env.time_budget_s == 20 and env.max_parallel == 2
    start = env.verify(env.initial_artifacts(1, 0)[0])
    assert start.ok and start.score == pytest.approx(1 / 3.5)
    assert start.metrics["value"] == pytest.approx(3.5) and "[point] x=0.0000" in start.log
    best = env.evaluate(GOOD, None, 0)
    assert best.ok and best.score == pytest.approx(1.0) and best.artifact == {"program": GOOD}

    pack = load_environment(str(tmp_path / "pack"))
    ev = pack.verify(pack.initial_artifacts(1, 0)[0])
    assert ev.ok and ev.score == pytest.approx(0.6) and "radii" in ev.log
    overlap = PACKED.replace("0.2, 0.2, 0.2", "0.3, 0.3, 0.3")
    bad = pack.evaluate(overlap, None, 0)
    assert not bad.ok and bad.failure == "invalid_artifact"
    assert "Validation failed: a circle leaves the unit square" in bad.log


PACKED = """import numpy as np


def run_packing():
    centers = np.array([[0.25, 0.25], [0.75, 0.25], [0.5, 0.75]])
    radii = np.array([0.2, 0.2, 0.2])
    return centers, radii, float(radii.sum())
"""


def test_the_cascade_stops_at_a_failing_stage(tmp_path):
    stages = '''def evaluate_stage1(program_path):
    src = open(program_path).read()
    return {"combined_score": 0.9 if "fast" in src else 0.2, "stage1": 1.0}


def evaluate_stage2(program_path):
    if "boom" in open(program_path).read():
        raise RuntimeError("stage 2 exploded")
    return {"combined_score": 0.95, "stage2": 1.0}
'''
    folder = write(tmp_path / "cascade", {
        "initial_program.py": "x = 'fast'\n", "evaluator.py": stages,
        "config.yaml": "evaluator:\n  cascade_thresholds: [0.5]\n"})
    env = load_environment(str(folder))
    slow = env.evaluate("x = 'slow'\n", None, 0)  # below stage 1's threshold: stage 2 never runs
    assert slow.ok and slow.score == 0.2 and slow.metrics["stages"] == ["stage1"]
    fast = env.evaluate("x = 'fast'\n", None, 0)
    assert fast.ok and fast.score == 0.95 and fast.metrics["stages"] == ["stage1", "stage2"]
    assert fast.metrics["stage1"] == 1.0 and fast.metrics["stage2"] == 1.0
    boom = env.evaluate("x = 'fast boom'\n", None, 0)
    assert not boom.ok and boom.failure == "crash" and "stage 2 exploded" in boom.log


def test_bad_folders_are_named_before_anything_runs(tmp_path):
    def refused(folder: Path, words: str) -> None:
        r = subprocess.run([*DISCOVER, "run", str(folder), "--backend", "null", "--steps", "1",
                            "--run-dir", str(tmp_path / "run")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and words in r.stderr, r.stderr[-2000:]
        assert not (tmp_path / "run").exists()  # refused before a run directory was made

    refused(write(tmp_path / "no-eval", {"initial_program.py": FM_INITIAL}), "has no evaluator")
    refused(write(tmp_path / "no-init", {"evaluator.py": FM_EVALUATOR}), "no initial program")
    refused(write(tmp_path / "syntax", {"initial_program.py": FM_INITIAL,
                                        "evaluator.py": "def evaluate(p):\n  return {\n"}),
            "evaluator.py has a syntax error at line")
    with pytest.raises(InvalidOptions, match="unknown option"):
        load_environment(str(openevolve_folder(tmp_path / "fm")), cases=3)
    with pytest.warns(UserWarning, match="whole program is the editable region"):
        env = load_environment(str(write(tmp_path / "noblock", {
            "initial_program.py": GOOD, "evaluator.py": FM_EVALUATOR})))
    assert env.verify(env.initial_artifacts(1, 0)[0]).score == pytest.approx(1.0)


@pytest.mark.slow
def test_an_initial_program_that_fails_its_evaluator_stops_the_run(tmp_path):
    folder = write(tmp_path / "broken", {
        "initial_program.py": "def run_search():\n    raise ValueError('not yet written')\n",
        "evaluator.py": FM_EVALUATOR})
    r = subprocess.run([*DISCOVER, "run", str(folder), "--backend", "null", "--steps", "1",
                        "--run-dir", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "the initial program fails its evaluator" in r.stderr and "not yet written" in r.stderr
    con = sqlite3.connect(tmp_path / "run" / "archive.sqlite")
    assert con.execute("SELECT COUNT(*) FROM candidates").fetchone()[0] == 0


@pytest.mark.slow
def test_hostile_programs_and_evaluators_through_the_real_pool(tmp_path):
    import ray

    from discover.scoring import ScorerPool, start_ray

    folder = openevolve_folder(tmp_path / "fm")
    secret = tmp_path / "hidden_answers.txt"  # the evaluator's data outside the folder
    secret.write_text("x=1.5 y=-0.5 SECRET")
    steal = (f"data = open({str(secret)!r}).read()\n"
             "def run_search():\n    return 1.5, -0.5\n")
    overwrite = ("import os\nopen(os.path.join(os.getcwd(), 'evaluator.py'), 'w').write("
                 "'def evaluate(p):\\n    return {\"combined_score\": 1e9}\\n')\n" + GOOD)
    jobs = [("HANG = True\n" + GOOD, None, 0), (steal, None, 0), (overwrite, None, 0),
            (GOOD, None, 0)]
    jobs += [(f"SCORE = {v}\n" + GOOD, None, 0) for v in ("float('nan')", "float('inf')",
                                                          "'0.9'", "True")]
    start_ray(num_cpus=2)
    try:
        pool = ScorerPool(canonical_name(str(folder)), {"timeout_s": 8.0}, slots=2)
        results = [ev for ev, _ in pool.evaluate(jobs)]
        pool.shutdown()
    finally:
        ray.shutdown()
    hang, stolen, overwritten, after, *scores = results
    assert hang.failure == "timeout" and "killed" in hang.log
    assert not stolen.ok and "SECRET" not in stolen.log and "hidden_answers" in stolen.log
    assert overwritten.ok and overwritten.score == pytest.approx(1.0)  # the evaluator had run
    assert after.ok and after.score == pytest.approx(1.0)  # the next one sees the evaluator
    assert (folder / "evaluator.py").read_text() == FM_EVALUATOR  # the folder is untouched
    assert [e.failure for e in scores] == ["invalid_output"] * 4
    assert "not a finite number" in scores[0].log


def run_folder(folder: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*DISCOVER, "run", str(folder), "--steps", "2", "--groups", "1",
                           "--group-size", "4", "--max-new-tokens", "120", "--seed", "0",
                           "--run-dir", str(run_dir), *extra],
                          capture_output=True, text=True, timeout=1500)


def generated(run_dir: Path) -> list[tuple]:
    con = sqlite3.connect(f"file:{run_dir / 'archive.sqlite'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT id, code, score, metrics FROM candidates WHERE ok = 1 AND "
                           "initial = 0 ORDER BY score DESC").fetchall()
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["openevolve", "shinka"])
def test_a_folder_runs_with_the_embedded_model_learning(tmp_path, shape):
    make = openevolve_folder if shape == "openevolve" else shinka_folder
    folder = make(tmp_path / shape)
    rd = tmp_path / "run"
    r = run_folder(folder, rd)
    assert r.returncode == 0, r.stderr[-3000:]
    kids = generated(rd)
    assert kids, "no valid child in 8 samples"
    cid, code, score, metrics = kids[0]
    assert "combined_score" in json.loads(metrics)  # the evaluator's metrics, stored
    metrics_log = [json.loads(x) for x in (rd / "metrics.jsonl").read_text().splitlines()]
    assert metrics_log[0]["learner"].get("policy_kl") is not None  # learning was on

    best = subprocess.run([*DISCOVER, "best", str(rd)], capture_output=True, text=True,
                          timeout=120)
    assert best.returncode == 0 and f"{score:.10f}" in best.stdout, best.stdout
    # the stored program, scored again by the folder's evaluator, scores the same
    program = tmp_path / "best.py"
    program.write_text(code)
    again = subprocess.run([*DISCOVER, "verify", str(folder), str(program)],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and float(again.stdout) == pytest.approx(score, abs=1e-9), \
        again.stderr
    # the UI's API serves the candidate with its evaluator's log
    from tests.test_ui import get, ui_server

    with ui_server(rd) as (base, _):
        status, c = get(base, f"/api/runs/0/candidates/{cid}")
    assert status == 200 and c["score"] == pytest.approx(score)
    shown = "[point]" if shape == "openevolve" else "[public]"  # the evaluator's artifacts
    assert shown in c["log"] + c["stdout"], c
    # export to the other tool's shape: the folder runs there and here, scoring the same
    other = "shinka" if shape == "openevolve" else "openevolve"
    out = tmp_path / "exported"
    x = subprocess.run([*DISCOVER, "export", str(rd), str(cid), "--out", str(out), "--format",
                        other], capture_output=True, text=True, timeout=120)
    assert x.returncode == 0, x.stderr
    assert read_folder(out).shape == other
    initial = out / ("initial.py" if other == "shinka" else "initial_program.py")
    assert initial.read_text() == code
    back = subprocess.run([*DISCOVER, "verify", str(out), str(initial)],
                          capture_output=True, text=True, timeout=120)
    assert back.returncode == 0 and float(back.stdout) == pytest.approx(score, abs=1e-9), \
        back.stderr


@pytest.mark.slow
def test_new_env_from_a_folder_installs_and_passes(tmp_path):
    import os

    folder = shinka_folder(tmp_path / "pack")
    r = subprocess.run([*DISCOVER, "new-env", "packing3", "--dir", str(tmp_path), "--from",
                        str(folder)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    pkg = tmp_path / "discover-packing3"
    assert (pkg / "discover_packing3" / "problem" / "evaluate.py").read_text() == \
        (folder / "evaluate.py").read_text()
    target = tmp_path / "site"  # a separate target: the project's venv stays untouched
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                          "--no-build-isolation", "--target", str(target), str(pkg)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-2000:]
    assert (target / "discover_packing3" / "problem" / "initial.py").exists()
    env = {**os.environ, "PYTHONPATH": str(target)}
    t = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(pkg / "tests")], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)
    # its 3 tests and a short search on 3 seeds
    assert t.returncode == 0 and "6 passed" in t.stdout, t.stdout[-3000:]
    broken = write(tmp_path / "broken", {"initial.py": "x = 1\n"})
    r = subprocess.run([*DISCOVER, "new-env", "broken", "--dir", str(tmp_path), "--from",
                        str(broken)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "has no evaluator" in r.stderr
    assert not (tmp_path / "discover-broken").exists()
