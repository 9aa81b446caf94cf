"""End to end: the real sandbox, SQLite and local Ray, at small size. A whole search whose
subject is not the model runs with no model (`--backend null`) in the everyday tier and with the
embedded model in the --all tier; the streamed-scoring check trains, so it needs the model."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from discover.archive import Archive
from discover.sandbox import isolation

DISCOVER = [sys.executable, "-m", "discover.cli"]
SMALL = ["--groups", "2", "--group-size", "2", "--max-new-tokens", "48",
         "--set", "env.time_budget_s=2"]
# No model in the everyday tier; the embedded model (and its learner) with --all.
BACKENDS = pytest.mark.parametrize("backend", ["null", pytest.param("hf", marks=pytest.mark.slow)])


def rows(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT id, step, code FROM candidates")
        return {i: (step, code) for i, step, code in rows}
    finally:
        con.close()


def run_cli(*args, timeout=600, **kw):
    return subprocess.run([*DISCOVER, *args], capture_output=True, text=True, timeout=timeout, **kw)


@BACKENDS
def test_run_records_every_candidate_and_best(tmp_path, backend):
    rd = tmp_path / "run"
    r = run_cli("run", "toy", "--steps", "2", "--run-dir", str(rd), *SMALL, "--backend", backend)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "step 2/2" in r.stderr
    a = Archive(rd / "archive.sqlite", readonly=True)
    assert a.last_step() == 1
    assert a.count() == 1 + 2 * 2 * 2  # the initial state + steps x groups x group size
    assert a.integrity_check() == []
    assert len((rd / "metrics.jsonl").read_text().splitlines()) == 2
    mode = isolation()["mode"]  # the scorers' level, recorded where a user finds it
    assert a.get_meta("sandbox") and mode in a.get_meta("sandbox")[0]
    first = (rd / "config.toml").read_text().splitlines()[0]
    assert first.startswith("# sandbox") and mode in first, first
    best = run_cli("best", str(rd))
    assert best.returncode == 0 and "candidates" in best.stdout


@BACKENDS
def test_existing_run_dir_needs_resume(tmp_path, backend):
    rd = tmp_path / "run"
    small = [*SMALL, "--backend", backend]
    assert run_cli("run", "toy", "--steps", "1", "--run-dir", str(rd), *small).returncode == 0
    again = run_cli("run", "toy", "--steps", "1", "--run-dir", str(rd), *small)
    assert again.returncode == 2 and "--resume" in again.stderr
    other = run_cli("run", "erdos", "--steps", "1", "--run-dir", str(rd), "--resume", *small)
    assert other.returncode == 2 and "run.env" in other.stderr


@BACKENDS
def test_sigkill_mid_step_then_resume(tmp_path, backend):
    rd = tmp_path / "run"
    # No model's steps are short: more of them, so that the kill lands before the last.
    steps = 4 if backend == "hf" else 12
    args = ["run", "toy", "--steps", str(steps), "--run-dir", str(rd), *SMALL, "--backend", backend]
    proc = subprocess.Popen([*DISCOVER, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    db = rd / "archive.sqlite"
    deadline = time.time() + 300
    while time.time() < deadline:  # wait for step 0 to be stored, then kill inside step 1
        if db.exists():
            try:
                if Archive(db, readonly=True).last_step() >= 0:
                    break
            except Exception:
                pass
        time.sleep(0.2)
    else:
        pytest.fail("the run never finished a step")
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = Archive(db, readonly=True)
    done = before.last_step()
    kept = rows(db)
    assert done < steps - 1, "the run finished before it could be killed; make steps slower"
    r = run_cli(*args, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    after = Archive(db, readonly=True)
    assert after.last_step() == steps - 1
    assert after.count() == 1 + steps * 2 * 2  # nothing lost, nothing duplicated
    assert after.integrity_check() == []
    now = rows(db)
    assert all(now[cid] == row for cid, row in kept.items())  # finished steps are untouched


def test_unknown_environment_is_refused(tmp_path):
    r = run_cli("run", "nosuchenv", "--steps", "1", "--run-dir", str(tmp_path / "x"))
    assert r.returncode == 2 and "unknown environment 'nosuchenv'" in r.stderr
    assert not (tmp_path / "x").exists()


def test_verify_refuses_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[0.5, NaN, 0.5]")
    r = run_cli("verify", "erdos", str(bad))
    assert r.returncode == 1 and "NaN" in r.stderr
    bad.write_text("[]")
    r = run_cli("verify", "erdos", str(bad))
    assert r.returncode == 1 and "empty" in r.stderr
    bad.write_text("[0.2, 1.7, 0.1]")
    r = run_cli("verify", "erdos", str(bad))
    assert r.returncode == 1 and "[0, 1]" in r.stderr


def stored(rd) -> dict:
    """Everything a run stored, less what measures time (it differs between any two runs)."""
    con = sqlite3.connect(f"file:{rd / 'archive.sqlite'}?mode=ro", uri=True)
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(candidates)")
                if r[1] not in ("gen_s", "eval_s", "created_at")]
        rows = con.execute(f"SELECT {', '.join(cols)} FROM candidates ORDER BY id").fetchall()
        # A sandbox's temporary folder (in the logs of crashes) and the scorer's Ray node (in the
        # metadata) are named anew in each run.
        fresh = r'discover-sandbox-\w+|"scorer_node": "\w+"'
        out = {"candidates": [tuple(re.sub(fresh, "FRESH", v) if isinstance(v, str) else v
                                    for v in row) for row in rows],
               "puct": con.execute("SELECT * FROM puct_nodes ORDER BY id").fetchall(),
               "adapters": con.execute("SELECT version, step, path FROM adapters").fetchall()}
        steps = []
        for (m,) in con.execute("SELECT metrics FROM steps ORDER BY step"):
            m = json.loads(m)
            for k in ("seconds", "time", "samples_per_hour"):
                m.pop(k)
            m["learner"].pop("seconds", None)
            steps.append(m)
        out["steps"] = steps
        return out
    finally:
        con.close()


@pytest.mark.slow
def test_a_streamed_step_stores_what_a_serial_step_stores(tmp_path):
    """Programs scored while the rest are still sampled (the default) against all scored after
    sampling: the same children, scores, logs, PUCT statistics, learner steps and adapters."""
    runs = {}
    for streamed in (True, False):
        rd = tmp_path / f"streamed-{streamed}"
        r = run_cli("run", "toy", "--steps", "2", "--run-dir", str(rd), "--learner", "entropic",
                    "--set", "learner.lr=1e-2", "--set", f"run.stream_scoring={streamed}",
                    *SMALL)
        assert r.returncode == 0, r.stderr[-3000:]
        runs[streamed] = stored(rd)
    a, b = runs[True], runs[False]
    assert len(a["candidates"]) == 1 + 2 * 2 * 2 and a["steps"][0]["total"] == 4
    for part in ("candidates", "puct", "adapters", "steps"):
        assert a[part] == b[part], part
    for _, _, path in a["adapters"]:  # the same weights, byte for byte
        one, two = (tmp_path / w / path / "adapter_model.safetensors"
                    for w in ("streamed-True", "streamed-False"))
        assert one.read_bytes() == two.read_bytes()
