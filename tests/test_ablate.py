"""Paired ablations: every arm starts from the same stored initial states (run.init_from), and
the script prints the paired table; a run started --init-from another run copies its states."""

import importlib.util
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def initial_states(run_dir: Path) -> list[tuple]:
    con = sqlite3.connect(f"file:{run_dir / 'archive.sqlite'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT code, artifact, score, reward, metrics FROM candidates "
                           "WHERE initial = 1 ORDER BY id").fetchall()
    finally:
        con.close()


def test_ablate_arms_share_initial_states_and_print_paired_differences(tmp_path):
    out = tmp_path / "ab"
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ablate.py"), "--envs", "toy", "--arms",
         "null+puct", "none+puct", "--seeds", "0", "1", "--steps", "1", "--groups", "1",
         "--group-size", "2", "--max-new-tokens", "24", "--out", str(out)],
        capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    for seed in (0, 1):
        init = initial_states(out / f"init-toy-s{seed}")
        assert init
        for arm in ("null+puct", "none+puct"):
            assert initial_states(out / f"toy-{arm}-s{seed}") == init
    assert "paired difference against none+puct" in r.stdout
    line = next(x for x in r.stdout.splitlines() if x.strip().startswith("null+puct") and
                "wins" in x)
    assert "mean" in line and "[" in line, line
    saved = json.loads((out / "ablate.json").read_text())
    assert set(saved) == {f"toy/{a}/s{s}" for a in ("null+puct", "none+puct") for s in (0, 1)}
    # What the valid children are: null+puct re-runs its parent's program, so all copies.
    for key, row in saved.items():
        assert row["copies"] + row["edits"] == round(row["valid_rate"] * row["samples"]), key
        if "null+puct" in key:
            assert row["edits"] == 0 and row["copies"] > 0, key
            assert all(tries == 0 for tries, _ in row["knob_tries"]), key  # copies retune nothing
        assert len(row["knob_tries"]) == row["steps"], key
        assert all(0 <= ok <= tries for tries, ok in row["knob_tries"]), key
    line = next(x for x in r.stdout.splitlines() if x.split()[:1] == ["null+puct"] and
                "children" in x)
    assert line.split()[1:3] == ["4", "children,"] and "edits 0.0% (0.0 a step)" in line, line
    line = next(x for x in r.stdout.splitlines() if x.split()[:1] == ["null+puct"] and
                "then" in x)
    assert line.split()[1:] == ["0.00", "(0.00),", "then", "0.00", "(0.00)"], line
    # --init-from the same folder reuses the stored init runs (no new seeding)
    before = (out / "init-toy-s0" / "archive.sqlite").stat().st_mtime_ns
    again = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ablate.py"), "--envs", "toy", "--arms",
         "null+puct", "--seeds", "0", "--steps", "1", "--groups", "1", "--group-size", "2",
         "--init-from", str(out), "--out", str(tmp_path / "ab2")],
        capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "init-toy-s0" / "archive.sqlite").stat().st_mtime_ns == before
    assert initial_states(tmp_path / "ab2" / "toy-null+puct-s0") == \
        initial_states(out / "init-toy-s0")
    # --out an earlier call's folder: its finished runs are reused, not run again
    ran = (out / "toy-null+puct-s0" / "archive.sqlite").stat().st_mtime_ns
    reuse = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ablate.py"), "--envs", "toy", "--arms",
         "null+puct", "none+puct", "--seeds", "0", "--steps", "1", "--groups", "1",
         "--group-size", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert reuse.returncode == 0, reuse.stderr[-3000:]
    assert (out / "toy-null+puct-s0" / "archive.sqlite").stat().st_mtime_ns == ran
    assert "toy null+puct" in reuse.stdout and "Started a local Ray" not in reuse.stderr


def test_init_from_refuses_a_folder_with_no_run(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "discover.cli", "run", "toy", "--backend", "null", "--steps", "1",
         "--init-from", str(tmp_path / "nothing"), "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 2 and "run.init_from" in r.stderr and "holds no run" in r.stderr, \
        r.stderr[-2000:]
    assert not (tmp_path / "run" / "archive.sqlite").exists() or not initial_states(
        tmp_path / "run")


def load_ablate():
    spec = importlib.util.spec_from_file_location("ablate", ROOT / "scripts" / "ablate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_equal_time_order_alternates_and_the_calibration_run_leads():
    ablate = load_ablate()
    arms = ["none+puct", "entropic+puct", "null+puct"]
    assert ablate.learning_arm(arms) == "entropic+puct"
    assert ablate.arm_order(arms, 0, "entropic+puct") == ["entropic+puct", "none+puct",
                                                           "null+puct"]
    assert ablate.arm_order(arms, 1) == ["null+puct", "entropic+puct", "none+puct"]
    assert ablate.arm_order(arms, 2) == arms


def test_equal_time_gives_every_arm_the_budget_in_alternating_order(tmp_path):
    out = tmp_path / "eq"
    arms = ["null+puct", "none+puct"]
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ablate.py"), "--envs", "toy", "--arms", *arms,
         "--seeds", "0", "1", "--equal-time", "--budget-s", "1.5", "--groups", "1",
         "--group-size", "2", "--max-new-tokens", "16", "--out", str(out),
         "--arm-set", "none+puct", "policy.temperature=0.9"],
        capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    ran = [(x.split()[1], int(x.split()[3].rstrip(":"))) for x in r.stdout.splitlines()
           if x.startswith("  toy ") and " seed " in x]
    assert ran == [("null+puct", 0), ("none+puct", 0), ("none+puct", 1), ("null+puct", 1)]
    for arm in arms:
        for seed in (0, 1):
            saved = tomllib.loads((out / f"toy-{arm}-s{seed}" / "config.toml").read_text())
            assert saved["run"]["budget_s"] == 1.5 and saved["run"]["steps"] >= 1000
            # --arm-set reaches its arm's runs only
            assert (saved["policy"]["temperature"] == 0.9) == (arm == "none+puct"), (arm, seed)
    assert "steps, samples" in r.stdout and "every arm had 1.5 s of steps" in r.stdout
    saved = json.loads((out / "ablate.json").read_text())
    for row in saved.values():
        assert row["steps"] >= 1 and row["samples"] == 2 * row["steps"]
        line = f"{row['steps']} steps  {row['samples']} samples"
        assert line in r.stdout
    # The same runs at equal samples (each pair at the steps both reached) and at strict equal
    # time (the steps that ended within the budget), from the best so far after each step.
    at = [min(saved[f"toy/{a}/s{s}"]["steps"] for a in arms) for s in (0, 1)]
    assert f"(steps {at[0]}/{at[0]}, {at[1]}/{at[1]})" in r.stdout
    strict = [[max(1, sum(t <= 1.5 for t in saved[f"toy/{a}/s{s}"]["step_end_s"]))
               for a in arms] for s in (0, 1)]
    assert f"(steps {strict[0][0]}/{strict[0][1]}, {strict[1][0]}/{strict[1][1]})" in r.stdout
    for row in saved.values():
        by_step = row["best_by_step"]
        assert len(by_step) == row["steps"] == len(row["step_end_s"])
        assert by_step[-1] == row["best"] and by_step == sorted(by_step)  # toy maximises
        assert row["step_end_s"] == sorted(row["step_end_s"])


def test_arm_set_must_name_an_arm_of_the_ablation(tmp_path):
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ablate.py"), "--envs", "toy", "--arms",
         "none+puct", "--arm-set", "entropic+puct", "policy.temperature=1.2", "--out",
         str(tmp_path / "x")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 2 and "--arm-set names 'entropic+puct'" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "x").exists()
