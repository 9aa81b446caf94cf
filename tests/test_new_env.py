"""A new problem runs the first time: `discover new-env` writes a package that installs, passes
its own tests (a short search among them) and searches from every seed tried; and the check on
the failure reward names the fix in the author's terms."""

import os
import subprocess
import sys

import pytest

from discover.config import ConfigError
from discover.environment import Environment
from discover.initial_states import check_failure_reward
from discover.problem_folder import FolderEnvironment
from tests.folders import openevolve_folder

DISCOVER = [sys.executable, "-m", "discover.cli"]
NAME = "newprob"  # installed into a throwaway folder only: the project's venv stays untouched
SEEDS = 5


def run(cmd, env, timeout=600, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The skeleton, written by the CLI and installed with pip into a separate target that
    PYTHONPATH names (pip writes its entry point there, so `discover envs` finds it)."""
    where = tmp_path_factory.mktemp("newenv")
    r = run([*DISCOVER, "new-env", NAME, "--dir", str(where)], None)
    assert r.returncode == 0, r.stderr
    pkg, target = where / f"discover-{NAME}", where / "site"
    pip = run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
               "--target", str(target), str(pkg)], None, timeout=300)
    assert pip.returncode == 0, pip.stderr[-2000:]
    return pkg, {**os.environ, "PYTHONPATH": str(target)}


@pytest.mark.slow
def test_the_skeleton_installs_passes_and_searches_on_every_seed(installed, tmp_path):
    pkg, env = installed
    envs = run([*DISCOVER, "envs"], env).stdout
    assert NAME in envs and "erdos" in envs  # the new one beside the shipped ones
    t = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(pkg)], env,
            cwd=tmp_path)
    assert t.returncode == 0 and "8 passed" in t.stdout, t.stdout[-3000:]
    # `discover run` on 5 seeds in one process (Ray starts once: about 5 s a seed, not 15).
    loop = (f"import sys\nfrom discover.cli import main\nsys.exit(max(main(['run', '{NAME}', "
            "'--backend', 'null', '--steps', '1', '--groups', '1', '--group-size', '2', "
            f"'--seed', str(s), '--run-dir', f'{tmp_path}/run{{s}}']) for s in range({SEEDS})))")
    r = run([sys.executable, "-c", loop], env)
    assert r.returncode == 0, r.stderr[-3000:]
    for seed in range(SEEDS):
        best = run([*DISCOVER, "best", str(tmp_path / f"run{seed}"), "-k", "1"], env)
        # 4 initial states and a step's 2 children (the null backend re-runs the parent's
        # program), every one valid
        assert best.returncode == 0 and "6 candidates, 6 valid, 1 steps" in best.stdout, \
            (seed, best.stdout, best.stderr)


@pytest.mark.slow
def test_the_skeleton_searches_with_the_embedded_model(installed, tmp_path):
    _, env = installed
    rd = tmp_path / "run"
    r = run([*DISCOVER, "run", NAME, "--steps", "1", "--groups", "1", "--group-size", "2",
             "--max-new-tokens", "32", "--seed", "0", "--run-dir", str(rd)], env)
    assert r.returncode == 0, r.stderr[-3000:]
    best = run([*DISCOVER, "best", str(rd)], env)
    assert best.returncode == 0 and "1 steps finished" in best.stdout, best.stdout


class Unbounded(Environment):
    name = "unbounded"


def test_the_check_names_the_property_and_a_value():
    with pytest.raises(ConfigError) as e:
        check_failure_reward(Unbounded(), [0.5, -1.48506, 2.0])
    msg = str(e.value)
    assert "initial construction 1 has reward -1.48506, not above the failure reward -1" in msg
    assert f"{__name__}.Unbounded.failure_reward" in msg and "-3 would pass" in msg
    assert "docs/ENVIRONMENTS.md" in msg
    check_failure_reward(Unbounded(), [-0.99, 3.0])  # above it: nothing to say
    with pytest.raises(ConfigError, match="finite"):
        check_failure_reward(Unbounded(), [float("nan")])


def test_the_check_names_the_folder_option(tmp_path):
    env = FolderEnvironment(str(openevolve_folder(tmp_path / "fm")))
    with pytest.raises(ConfigError, match=r"--set env\.failure_reward=-6 "):
        check_failure_reward(env, [-5.0])
