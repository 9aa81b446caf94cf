"""The same command stores the same candidates: with no model (`--backend null`) a run is a
function of its config, on the toy and on Erdős (whose starter counts iterations, not seconds,
so its rewards no longer depend on the machine's load)."""

import sqlite3
import subprocess
import sys

import pytest


def candidates(run_dir) -> list[tuple]:
    con = sqlite3.connect(f"file:{run_dir / 'archive.sqlite'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT code, artifact, score, parent_id, step, failure "
                           "FROM candidates ORDER BY id").fetchall()
    finally:
        con.close()


# The toy in the everyday tier; Erdős (a minute of starter runs) with --all.
@pytest.mark.parametrize("env, steps",
                         [("toy", 3), pytest.param("erdos", 1, marks=pytest.mark.slow)])
def test_a_null_run_repeats_itself(tmp_path, env, steps):
    runs = []
    for name in ("a", "b"):
        rd = tmp_path / name
        r = subprocess.run([sys.executable, "-m", "discover.cli", "run", env, "--backend", "null",
                            "--steps", str(steps), "--seed", "0", "--run-dir", str(rd)],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        runs.append(candidates(rd))
    assert len(runs[0]) > steps and sum(c[5] is None for c in runs[0]) > 1
    assert runs[0] == runs[1]
