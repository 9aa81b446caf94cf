"""A closed pipe ends every command quietly (`discover best RUN | head -3`): no traceback, no
'discover: error: BrokenPipeError', the status of a process ended by SIGPIPE."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from discover.archive import Archive, Candidate
from discover.puct import Puct

DISCOVER = [sys.executable, "-m", "discover.cli"]
SIGPIPE_STATUS = 141  # 128 + SIGPIPE, what `seq 1000000 | head -1` gives seq


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run whose `show --full` prints far more than a pipe holds (64 KiB)."""
    rd = tmp_path_factory.mktemp("pipe") / "run"
    rd.mkdir()
    a = Archive(rd / "archive.sqlite")
    a.set_meta("env", "toy")
    puct = Puct()
    a.add_initial([Candidate(None, -1, None, None, [1] * 50_000, 50.0, 50.0, True)], puct)
    a.commit_step(0, [(1, [Candidate(None, 0, None, "x = 1\n" * 30_000, [2] * 50_000, 60.0,
                                     60.0, True, group_idx=0)])], puct, {"total": 1})
    a.close()
    return rd


@pytest.mark.parametrize("argv", [["best", "{run}"], ["show", "{run}", "2", "--full"],
                                  ["tree", "{run}"], ["compare", "{run}", "{run}"], ["envs"]])
def test_a_closed_pipe_ends_a_command_quietly(run, argv):
    argv = [a.format(run=run) for a in argv]
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes anything
    try:
        r = subprocess.run([*DISCOVER, *argv], stdout=write, stderr=subprocess.PIPE, text=True,
                           timeout=120)
    finally:
        os.close(write)
    assert r.stderr == "" and r.returncode == SIGPIPE_STATUS, r.stderr


def test_head_takes_what_it_wants(run):
    """The issue's case, through a shell pipeline: head closes the pipe after three lines of
    more output than the pipe buffers."""
    cmd = f"{shlex.join([*DISCOVER, 'show', str(run), '2', '--full'])} | head -3; " \
          "echo \"status ${PIPESTATUS[0]}\" >&2"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert r.stdout.splitlines()[0].startswith("candidate 2 of ")
    assert len(r.stdout.splitlines()) == 3
    assert r.stderr == f"status {SIGPIPE_STATUS}\n", r.stderr
