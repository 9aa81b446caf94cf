"""Crash safety of a whole run: SIGKILL at random points, Ctrl-C, resume, integrity.

The real `discover run` (real model, sandbox, SQLite, local Ray) as a subprocess in its own
session, killed with SIGKILL (the whole session, so Ray's processes die too) at random points:
early start-up, while Ray, the scorers and the model load, and in the middle of a step. After
every kill the run directory must pass the integrity check (allowing only the files a resume
rewrites) and keep every finished step unchanged; `--resume` then goes on, and in the end the run
completes and passes the strict check. Set DISCOVER_CRASH_SEED to replay a sequence of kills.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from sessions import kill_session, session_pids

from discover.integrity import check_run_dir

DISCOVER = [sys.executable, "-m", "discover.cli"]
TINY = ["--groups", "1", "--group-size", "2", "--set", "policy.max_new_tokens=16",
        "--set", "env.time_budget_s=2", "--set", "ray.scorer_slots=1"]
STEPS = 7  # enough that the kills (about one step gained per mid-step kill) never finish it
PHASES = ("early", "loading", "mid-step")
WAIT_S = 300  # for a launch to reach a phase (a loaded 2-core machine is slow)


class Launch:
    """`discover run ...` in its own session; its stderr lines are watched for the phases."""

    def __init__(self, args: list[str], tmpdir: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [*DISCOVER, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True, env={**os.environ, "TMPDIR": tmpdir},
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())

    def phase(self) -> str:
        """Where the run is, from what it printed: early, loading (Ray is up), or mid-step."""
        if any(re.search(r"\] step \d+/\d+", line) for line in self.lines):
            return "mid-step"
        if any("Started a local Ray instance" in line for line in self.lines):
            return "loading"
        return "early"

    def wait_for(self, phase: str, timeout: float = WAIT_S) -> bool:
        deadline = time.monotonic() + timeout
        while PHASES.index(self.phase()) < PHASES.index(phase):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def kill(self) -> list[int]:
        """SIGKILL every process of its session; returns those still alive 10 s later."""
        alive = kill_session(self.proc.pid)
        self.proc.wait()
        return alive


def ended(sid: int, timeout: float = 30) -> bool:
    """Every process of the session is gone within `timeout` (e.g. Ray's, at the run's exit)."""
    deadline = time.monotonic() + timeout
    while session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return session_pids(sid) == []


def pids_under(tmpdir: str) -> list[int]:
    """Live processes working in `tmpdir`: sandboxed programs of the run (their cwd is there)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.readlink(f"/proc/{entry}/cwd").startswith(tmpdir):
                found.append(int(entry))
        except OSError:
            continue
    return found


def stored(rd: Path) -> dict:
    """What must never change once stored: candidates, steps and adapters rows."""
    db = rd / "archive.sqlite"
    if not db.exists():
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'steps'").fetchone():
            return {}
        return {
            "candidates": con.execute("SELECT id, step, group_idx, code, reward, ok, "
                                      "policy_version FROM candidates ORDER BY id").fetchall(),
            "steps": con.execute("SELECT step, metrics FROM steps ORDER BY step").fetchall(),
            "adapters": con.execute("SELECT version, step, path FROM adapters "
                                    "ORDER BY version").fetchall(),
        }
    finally:
        con.close()


def kept(before: dict, after: dict) -> bool:
    return all(after.get(k, [])[:len(rows)] == rows for k, rows in before.items())


@pytest.fixture
def tmpdir_for_runs():
    """A short TMPDIR of the runs' own (sandbox directories, Ray's session), crossable by the
    sandbox's uid, so that what a killed run leaves there can be found and removed."""
    path = tempfile.mkdtemp(prefix="dcr-", dir="/tmp")
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def crash_loop(rd: Path, args: list[str], kills: int, rng: random.Random, tmpdir: str) -> dict:
    """Kill `kills` launches at random points, checking the run directory after each; then
    resume to the end. Returns counts for the report."""
    phases: dict[str, int] = {p: 0 for p in PHASES}
    corrupted, leftover, lost = [], [], []
    t0 = time.monotonic()
    for i in range(kills):
        before = stored(rd)
        resume = ["--resume"] if (rd / "config.toml").exists() else []
        launch = Launch(["run", "toy", "--run-dir", str(rd), *args, *resume], tmpdir)
        target = PHASES[i % len(PHASES)]
        assert launch.wait_for(target), f"launch {i} ended before {target}: {launch.lines[-5:]}"
        time.sleep(rng.uniform(0.2, 4.0) if target == "early" else rng.uniform(0.0, 2.0))
        phases[launch.phase()] += 1
        assert launch.proc.poll() is None, f"the run finished before kill {i}; raise STEPS"
        leftover += launch.kill()
        time.sleep(0.5)  # the sandboxed programs die with their scorer (parent-death signal)
        leftover += pids_under(tmpdir)
        after = stored(rd)
        if not kept(before, after):
            lost.append(i)
        if (rd / "archive.sqlite").exists():
            problems = check_run_dir(rd, repairable_ok=True)
            if problems:
                corrupted.append((i, problems))
    final = subprocess.run([*DISCOVER, "run", "toy", "--run-dir", str(rd), *args, "--resume"],
                           capture_output=True, text=True, timeout=900,
                           env={**os.environ, "TMPDIR": tmpdir})
    assert final.returncode == 0, final.stderr[-3000:]
    return {"phases": phases, "corrupted": corrupted, "leftover": leftover, "lost": lost,
            "seconds": time.monotonic() - t0}


@pytest.mark.slow  # 21 killed runs with the model: the --all tier
def test_sigkill_at_random_points_then_resume(tmp_path, tmpdir_for_runs):
    seed = int(os.environ.get("DISCOVER_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    runs = {  # a search without learning, and one whose every step makes a new adapter version
        "none": (tmp_path / "none", [*TINY, "--steps", str(STEPS), "--learner", "none"], 10),
        "entropic": (tmp_path / "entropic", [*TINY, "--steps", str(STEPS), "--learner",
                                             "entropic", "--set", "learner.kl_coef=0.01"], 11),
        # run.overlap: a kill may land while the last stored step's update runs beside sampling
        "overlap": (tmp_path / "overlap", [*TINY, "--steps", str(STEPS), "--learner", "entropic",
                                           "--set", "learner.kl_coef=0.01",
                                           "--set", "run.overlap=true"], 8),
    }
    results = {}
    for name, (rd, args, kills) in runs.items():
        results[name] = crash_loop(rd, args, kills, rng, tmpdir_for_runs)
    report = (f"crash loop (DISCOVER_CRASH_SEED={seed}): " + "; ".join(
        f"{name}: {sum(r['phases'].values())} kills {r['phases']}, archives corrupted "
        f"{len(r['corrupted'])}, finished steps changed {len(r['lost'])}, processes left "
        f"{len(r['leftover'])}, {r['seconds']:.0f} s" for name, r in results.items()))
    print("\n" + report)
    total = {p: sum(r["phases"][p] for r in results.values()) for p in PHASES}
    assert sum(total.values()) >= 28
    assert total["loading"] >= 3 and total["mid-step"] >= 3, report  # both kinds of kill landed
    for name, r in results.items():
        assert r["corrupted"] == [] and r["lost"] == [] and r["leftover"] == [], (name, r)
    for name, (rd, _, _) in runs.items():
        assert check_run_dir(rd) == [], name  # the strict check: every file written again
        con = sqlite3.connect(rd / "archive.sqlite")
        steps = con.execute("SELECT COUNT(*) FROM steps").fetchone()[0]
        count = con.execute("SELECT COUNT(*) FROM candidates WHERE step >= 0").fetchone()[0]
        versions = con.execute("SELECT MAX(version) FROM adapters").fetchone()[0]
        sampled = set(con.execute("SELECT step, policy_version FROM candidates WHERE step >= 0"))
        con.close()
        assert steps == STEPS and count == STEPS * 2, (name, steps, count)  # none twice
        if name == "entropic":
            assert versions == STEPS  # kl_coef > 0: one optimiser step, one version, per step
            assert sampled == {(s, s) for s in range(STEPS)}
        elif name == "overlap":  # each step samples one version behind; the last update waits
            assert versions == STEPS - 1  # for a resume that adds steps
            assert sampled == {(s, max(0, s - 1)) for s in range(STEPS)}
        else:
            assert versions is None


# With no model (everyday) the steps are short: enough of them that Ctrl-C lands before the last.
CTRL_C_RUNS = pytest.mark.parametrize("backend, steps", [
    ("null", 30), pytest.param("hf", 3, marks=pytest.mark.slow)])


@CTRL_C_RUNS
def test_ctrl_c_finishes_the_step_then_stops(tmp_path, tmpdir_for_runs, backend, steps):
    """SIGINT to the process group, as a terminal's Ctrl-C sends it: the step in progress is
    finished and stored, the run exits 130 and says how to resume; resuming completes it."""
    rd = tmp_path / "run"
    args = ["run", "toy", "--run-dir", str(rd), *TINY, "--steps", str(steps), "--backend", backend]
    launch = Launch(args, tmpdir_for_runs)
    assert launch.wait_for("mid-step")
    os.killpg(launch.proc.pid, signal.SIGINT)
    assert launch.proc.wait(timeout=WAIT_S) == 130
    time.sleep(0.2)  # the reader thread has the last lines
    err = "\n".join(launch.lines)
    assert "stopping after the step in progress is stored" in err
    assert re.search(r"stopped after step \d+: \d+ finished steps are stored", err), err
    assert f"resume with: discover run toy --run-dir {rd} --resume" in err
    assert "Traceback" not in err
    assert check_run_dir(rd) == []  # finished cleanly: nothing to repair
    assert ended(launch.proc.pid)  # Ray went down with it
    con = sqlite3.connect(rd / "archive.sqlite")
    logs = [r[0] for r in con.execute("SELECT log FROM candidates")]
    con.close()
    assert not any("scorer failed" in log for log in logs)  # Ctrl-C did not hit the scorers
    r = subprocess.run([*DISCOVER, *args, "--resume"], capture_output=True, text=True,
                       timeout=900, env={**os.environ, "TMPDIR": tmpdir_for_runs})
    assert r.returncode == 0, r.stderr[-3000:]
    assert check_run_dir(rd) == []


@pytest.mark.slow  # needs a step longer than the 0.3 s between the two signals: the model's
def test_second_ctrl_c_discards_the_step_in_progress(tmp_path, tmpdir_for_runs):
    rd = tmp_path / "run"
    launch = Launch(["run", "toy", "--run-dir", str(rd), *TINY, "--steps", "3"],
                    tmpdir_for_runs)
    assert launch.wait_for("mid-step")
    os.kill(launch.proc.pid, signal.SIGINT)
    time.sleep(0.3)
    os.kill(launch.proc.pid, signal.SIGINT)
    assert launch.proc.wait(timeout=WAIT_S) == 130
    time.sleep(0.2)
    err = "\n".join(launch.lines)
    assert re.search(r"stopped before step \d+ was stored \(it is discarded and runs again on "
                     r"resume\); \d+ finished steps are stored", err), err
    assert f"--run-dir {rd} --resume" in err and "Traceback" not in err
    assert check_run_dir(rd, repairable_ok=True) == []
    assert ended(launch.proc.pid)

