"""The run-directory check finds what a crash or a hand could break, and resume's repair fixes
exactly what a kill between a step's commit and its file writes can leave."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from fake_run import fake_run, write_adapter

from discover.archive import Archive
from discover.integrity import check_run_dir
from discover.learners.peft import STATE_FILE
from discover.rundir import RunDir, repair_run_dir


def make_run(root: Path, learner: str = "entropic") -> RunDir:
    """A run directory as a run of 3 steps leaves it (with adapters, when learning)."""
    fake_run(root, 3, config={"run": {"groups": 1, "group_size": 2},
                              "learner": {"method": learner}},
             learning=learner != "none", files=True)
    return RunDir(root)


def test_a_sound_run_passes(tmp_path):
    for learner in ("entropic", "none"):
        rd = make_run(tmp_path / learner, learner=learner)
        assert check_run_dir(rd.path) == []
        assert len(list(rd.artifacts.glob("*.json"))) == 3
        assert len(rd.metrics.read_text().splitlines()) == 3


def test_what_a_kill_leaves_is_repairable_and_repaired(tmp_path):
    rd = make_run(tmp_path / "run")
    (rd.artifacts / "2.json").unlink()  # killed between the commit and the artefact files
    (rd.artifacts / "9.json.tmp").write_text("[1, ")  # ... while writing one
    lines = rd.metrics.read_text().splitlines()
    rd.metrics.write_text("\n".join(lines[:1]) + "\n" + lines[1][:7])  # ... while appending
    write_adapter(rd.adapter(4), 4)  # an adapter of a step that was never committed
    shutil.copytree(rd.adapter(3), rd.adapters / "v00004.partial")
    strict = check_run_dir(rd.path)
    assert len(strict) == 4, strict
    assert check_run_dir(rd.path, repairable_ok=True) == []
    a = Archive(rd.archive)
    repair_run_dir(rd, a)
    a.close()
    assert check_run_dir(rd.path) == []
    assert not rd.adapter(4).exists() and rd.adapter(3).exists()


def test_damage_is_found(tmp_path):
    rd = make_run(tmp_path / "run")
    (rd.artifacts / "4.json").write_text("[9, 9]")  # an artefact that is not the archive's
    shutil.rmtree(rd.adapter(2))  # a recorded adapter gone
    (rd.adapter(3) / STATE_FILE).write_text(json.dumps({"version": 7}))
    con = sqlite3.connect(rd.archive)
    con.execute("INSERT INTO candidates (step, group_idx, reward, ok, created_at) "
                "VALUES (1, 0, 0, 0, 0)")  # a child too many in a finished step
    con.commit()
    con.close()
    problems = "\n".join(check_run_dir(rd.path))
    assert "artefact file 4.json differs from the archive" in problems
    assert "adapter version 2" in problems and "lacks" in problems
    assert "adapter version 3" in problems and "says 7" in problems
    assert "step 1 holds 3 candidates, its metrics count 2" in problems
    assert "step 1 group 0 holds 3 children, not group_size = 2" in problems


def test_adapter_versions_must_match_the_learner(tmp_path):
    rd = make_run(tmp_path / "run")
    con = sqlite3.connect(rd.archive)
    con.execute("DELETE FROM adapters WHERE version = 3")  # the last step's version, unrecorded
    con.execute("UPDATE candidates SET policy_version = 9 WHERE id = 2")
    con.commit()
    con.close()
    problems = "\n".join(check_run_dir(rd.path, repairable_ok=True))
    assert "policy version 3 has no adapter row" in problems
    assert "policy versions that have no adapter row: 9" in problems


def test_not_a_run(tmp_path):
    assert "config.toml" in check_run_dir(tmp_path)[0]
    rd = make_run(tmp_path / "run")
    rd.archive.write_bytes(b"garbage" * 100)
    assert "not an SQLite file" in check_run_dir(rd.path)[0]
