"""`discover run --ray-address` against a Ray cluster the user started: a head and a second node
started with `ray start` on this machine (own temp dirs and ports, token authentication as Ray
documents it: RAY_AUTH_MODE=token and a token file named by RAY_AUTH_TOKEN_PATH), torn down after.

Scoring must spread over both nodes (each candidate records its scorer's node), and a driver
without the token, or with a wrong one, must get a clear `discover: error:`. The model here is a
stub provider (openai_stub) that always writes a program, so that every sample is scored.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai_stub
import pytest

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))
DISCOVER = [sys.executable, "-m", "discover.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_ports() -> list[str]:
    """Ports of their own for every service of a node (others' clusters share this machine)."""
    ports = []
    for flag in ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
                 "--metrics-export-port"):
        ports += [flag, str(free_port())]
    return ports


def start_node(args: list[str], temp: Path, env: dict, log: Path) -> subprocess.Popen:
    """`ray start ... --block` in its own session: SIGTERM to it stops that node."""
    return subprocess.Popen(
        [RAY, "start", *args, "--temp-dir", str(temp), "--num-cpus", "1", "--num-gpus", "0",
         "--disable-usage-stats", "--block", *node_ports()],
        env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
        start_new_session=True)


def alive_nodes(address: str, env: dict) -> list[str]:
    code = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
            "print(' '.join(n['NodeID'] for n in ray.nodes() if n['Alive']))")
    out = subprocess.run([sys.executable, "-c", code, address], env=env, capture_output=True,
                         text=True, timeout=120)
    return out.stdout.split() if out.returncode == 0 else []


def stop_node(proc: subprocess.Popen, temp: Path) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    # Anything of this node still running (found by its own temp dir) is ours to end.
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and str(temp).encode() in (d / "cmdline").read_bytes():
                os.kill(int(d.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


@pytest.fixture(scope="module")
def cluster():
    """A two-node cluster with token authentication: (address, env with the token, node ids)."""
    # Not under pytest's tmp_path: Ray's socket paths (TEMP/session_DATE_TIME_USEC_PID/sockets/
    # plasma_store) must stay within AF_UNIX's 107 bytes, and /tmp/pytest-of-USER/pytest-N/
    # cluster0/worker passes that once N has three digits.
    tmp = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
    token = tmp / "auth_token"
    token.write_text(os.urandom(16).hex())
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    port = free_port()
    address = f"127.0.0.1:{port}"
    nodes = []
    try:
        nodes.append((start_node(["--head", "--node-ip-address", "127.0.0.1", "--port",
                                  str(port), "--include-dashboard", "false"],
                                 tmp / "head", env, tmp / "head.log"), tmp / "head"))
        deadline = time.monotonic() + 180
        while not alive_nodes(address, env):
            assert time.monotonic() < deadline, (tmp / "head.log").read_text()[-3000:]
            time.sleep(1)
        nodes.append((start_node(["--address", address, "--node-ip-address", "127.0.0.1"],
                                 tmp / "worker", env, tmp / "worker.log"), tmp / "worker"))
        while len(ids := alive_nodes(address, env)) < 2:
            assert time.monotonic() < deadline, (tmp / "worker.log").read_text()[-3000:]
            time.sleep(1)
        yield address, env, ids
    finally:
        for proc, temp in reversed(nodes):
            stop_node(proc, temp)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def stub():
    srv = openai_stub.start()
    srv.provider.content = openai_stub.CODE
    yield srv
    openai_stub.stop(srv)


def run(address: str, env: dict, run_dir: Path, base_url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*DISCOVER, "run", "toy", "--ray-address", address, "--backend", "openai", "--base-url",
         base_url, "--model", "stub", "--steps", "2", "--groups", "2", "--group-size", "3",
         "--run-dir", str(run_dir)], env=env, capture_output=True, text=True, timeout=600)


def test_scoring_spreads_over_both_nodes_of_a_cluster(cluster, stub, tmp_path):
    address, env, ids = cluster
    proc = run(address, env, tmp_path / "run", stub.base_url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Started a local Ray instance" not in proc.stderr  # it joined the cluster
    with sqlite3.connect(tmp_path / "run" / "archive.sqlite") as db:
        metrics = [json.loads(m) for (m,) in db.execute(
            "SELECT metrics FROM candidates WHERE initial = 0 AND code IS NOT NULL")]
    assert len(metrics) == 12
    nodes = [m["scorer_node"] for m in metrics]
    assert set(nodes) == set(ids)  # both nodes scored, and only the cluster's nodes


@pytest.mark.parametrize("auth", ["no token mode", "wrong token"])
def test_a_driver_without_the_clusters_token_gets_a_clear_error(cluster, stub, tmp_path, auth):
    address, env, _ = cluster
    if auth == "no token mode":
        env = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    else:
        wrong = tmp_path / "wrong_token"
        wrong.write_text("0" * 32)
        env = {**env, "RAY_AUTH_TOKEN_PATH": str(wrong)}
    proc = run(address, env, tmp_path / "run", stub.base_url)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("discover: error:") and "RAY_AUTH_MODE=token" in last, last
    assert ("not set" in last) if auth == "no token mode" else ("token (wrong" in last)
    assert not stub.requests  # it stopped before sampling anything


SLOW_CODE = "```python\nimport time\ndef solve():\n    time.sleep(3)\n    return [1, 2, 3]\n```"


def test_a_node_lost_mid_step_costs_no_candidate(cluster, stub, tmp_path):
    """A third node joins, holding one of the scorers; every process of that node is killed while
    its scorer runs a program. The run finishes: the lost job is scored on a live node, no
    candidate is stored as a failure because of the kill, and `discover check` is clean."""
    address, env, ids = cluster
    stub.provider.content = SLOW_CODE
    temp = Path(tempfile.mkdtemp(prefix="rv-", dir="/tmp"))
    victim = start_node(["--address", address, "--node-ip-address", "127.0.0.1"], temp, env,
                        temp / "victim.log")
    try:
        deadline = time.monotonic() + 180
        while len(alive_nodes(address, env)) < 3:
            assert time.monotonic() < deadline, (temp / "victim.log").read_text()[-3000:]
            time.sleep(1)
        rd = tmp_path / "run"
        proc = subprocess.Popen(
            [*DISCOVER, "run", "toy", "--ray-address", address, "--backend", "openai",
             "--base-url", stub.base_url, "--model", "stub", "--steps", "2", "--groups", "2",
             "--group-size", "3", "--set", "env.time_budget_s=20", "--run-dir", str(rd)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while not stub.requests:  # sampled: the programs go to the scorers now
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
        time.sleep(1.5)  # inside the first evaluations (3 s each)
        stop_node(victim, temp)  # SIGTERM, then SIGKILL to everything of that node
        err = proc.communicate(timeout=600)[1]
        assert proc.returncode == 0, err[-3000:]
    finally:
        stop_node(victim, temp)
        shutil.rmtree(temp, ignore_errors=True)
    check = subprocess.run([*DISCOVER, "check", str(rd)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    with sqlite3.connect(rd / "archive.sqlite") as db:
        rows = db.execute("SELECT ok, failure, log, metrics FROM candidates "
                          "WHERE initial = 0").fetchall()
    assert len(rows) == 12 and all(ok for ok, *_ in rows), [r[:3] for r in rows if not r[0]]
    losses = [json.loads(m).get("scorer_losses", 0) for *_, m in rows]
    assert sum(losses) >= 1, "the kill hit no running evaluation"
    assert {json.loads(m)["scorer_node"] for *_, m in rows} <= set(alive_nodes(address, env))
