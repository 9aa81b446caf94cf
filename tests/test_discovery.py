"""Discovery on the default path: initial states carry the starter program, the embedded model
improves on it, and the null model (no LLM) is the floor it is compared with."""

import json
import sqlite3
import subprocess
import sys

import pytest

from discover.registry import load_environment

pytestmark = pytest.mark.slow

DISCOVER = [sys.executable, "-m", "discover.cli"]


def run_cli(*args, timeout=900):
    r = subprocess.run([*DISCOVER, *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def candidates(rd):
    con = sqlite3.connect(f"file:{rd / 'archive.sqlite'}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM candidates ORDER BY id")]
    finally:
        con.close()


def test_the_null_model_reruns_each_parent_program_from_a_starter_seeded_state(tmp_path):
    rd = tmp_path / "null"
    run_cli("run", "erdos", "--backend", "null", "--steps", "2", "--groups", "2",
            "--group-size", "2", "--run-dir", str(rd), "--set", "env.iterations=20000",
            "--set", "run.initial_states=2")
    rows = candidates(rd)
    by_id = {r["id"]: r for r in rows}
    starter = load_environment("erdos").starter_program()
    initial = [r for r in rows if r["initial"]]
    assert len(initial) == 2
    for r in initial:  # the starter ran on each starting construction, and improved it
        start = json.loads(r["metrics"])["start_score"]
        assert r["code"] == starter and r["score"] < start - 0.01
    children = [r for r in rows if not r["initial"]]
    assert len(children) == 2 * 2 * 2
    for c in children:  # no model: the parent's program, re-run unchanged
        assert c["ok"] == 1 and c["code"] == by_id[c["parent_id"]]["code"]
        assert c["score"] <= by_id[c["parent_id"]]["score"] + 1e-12  # it keeps improvements
    assert not (rd / "adapters").exists()  # nothing to train: the learner is off
    cfg = (rd / "config.toml").read_text()
    assert 'backend = "null"' in cfg and 'method = "none"' in cfg


def test_the_embedded_model_improves_on_the_erdos_starter_with_learning_on(tmp_path):
    rd = tmp_path / "erdos"
    # At 0.4 most answers run (a copy re-runs the local search from its parent's output, which
    # gains a little); at Erdős's 1.0 a quarter to a half do, too few of 12 to assert on, and
    # with its overlap step 1 still samples with the base model.
    r = run_cli("run", "erdos", "--steps", "2", "--groups", "1", "--group-size", "6",
                "--max-new-tokens", "160", "--run-dir", str(rd), "--set", "env.iterations=20000",
                "--set", "run.initial_states=1", "--set", "policy.temperature=0.4")
    assert "learner entropic" in r.stderr  # test-time RL is the default
    rows = candidates(rd)
    by_id = {c["id"]: c for c in rows}
    children = [c for c in rows if not c["initial"]]
    valid = [c for c in children if c["ok"]]
    better = [c for c in valid if c["score"] < by_id[c["parent_id"]]["score"]]
    assert len(valid) >= len(children) // 3, [c["failure"] for c in children]
    assert better, "no generated candidate beat its parent"
    for c in valid:  # every valid child is the starter with its editable block rewritten
        assert c["code"].startswith("# EVOLVE-BLOCK-START\n") and "def solve(" in c["code"]
    # Erdős recommends overlap: step 0's update is published (and its figures logged) in step 1
    learned = json.loads((rd / "metrics.jsonl").read_text().splitlines()[-1])["learner"]
    assert learned and "beta" in learned


def test_the_embedded_model_writes_a_better_toy_program_than_its_parent(tmp_path):
    """The second environment: on the toy (whole one-line programs) a generated program that
    differs from its parent's scores higher (measured: 13 of 48 in 3 steps of 2 x 8)."""
    rd = tmp_path / "toy"
    run_cli("run", "toy", "--steps", "2", "--groups", "1", "--group-size", "8",
            "--max-new-tokens", "64", "--run-dir", str(rd), "--set", "run.initial_states=1")
    rows = candidates(rd)
    by_id = {c["id"]: c for c in rows}
    edited_better = [c for c in rows if not c["initial"] and c["ok"]
                     and c["score"] > by_id[c["parent_id"]]["score"]
                     and c["code"].strip() != (by_id[c["parent_id"]]["code"] or "").strip()]
    assert edited_better, [(c["failure"], c["score"]) for c in rows]
