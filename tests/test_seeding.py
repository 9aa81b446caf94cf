"""Step 0 of a run: each starting construction is improved once by the starter program; a
starter that runs out of time (past the wall limit: one that never returns, or a machine far
too busy for its work) leaves its state unimproved, a broken one stops the run with an error
that names it. Real Ray scorers, the real sandbox, a real SQLite file."""

import pytest
import ray

from discover.archive import Archive
from discover.config import Config, ConfigError
from discover.initial_states import seed_initial_states
from discover.puct import Puct
from discover.scoring import ScorerPool, start_ray
from environments.erdos.env import ErdosEnvironment

SLEEPER = "import time\n\n\ndef solve(parent, iters, seed):\n    time.sleep(3600)\n"
BROKEN = "def solve(parent, iters, seed):\n    raise RuntimeError('boom')\n"


class WithStarter(ErdosEnvironment):
    def __init__(self, program: str | None, **options):
        super().__init__(**options)
        self.program = program

    def starter_program(self) -> str | None:
        return self.program or super().starter_program()


@pytest.fixture(scope="module")
def pool():
    start_ray(num_cpus=2)
    # A quarter of a run's work, and a wall limit of 0.5 s (+ the sandbox's start-up margin)
    # that the sleeper passes soon.
    p = ScorerPool("erdos", {"time_budget_s": 0.5, "iterations": 10000}, slots=2)
    yield p
    p.shutdown()
    ray.shutdown()


def seed(tmp_path, pool, program):
    env = WithStarter(program, time_budget_s=0.5, iterations=10000)
    cfg = Config()
    cfg.run.initial_states = 2
    archive = Archive(tmp_path / "archive.sqlite")
    seed_initial_states(env, cfg, archive, Puct(), pool)
    starts = [env.verify(a).score for a in env.initial_artifacts(2, cfg.run.seed)]
    return archive, starts


def test_the_starter_improves_each_starting_construction(tmp_path, pool):
    archive, starts = seed(tmp_path, pool, None)
    rows = sorted(archive.best(2), key=lambda c: c.id)
    assert [c.code for c in rows] == [ErdosEnvironment().starter_program()] * 2
    for c, start in zip(rows, starts, strict=True):
        assert c.initial and c.metrics["start_score"] == start and c.score < start


def test_a_starter_out_of_time_leaves_its_state_unimproved_with_a_warning(tmp_path, pool,
                                                                           capsys):
    archive, starts = seed(tmp_path, pool, SLEEPER)
    assert "the starter program ran out of time on initial construction 0" in \
        capsys.readouterr().err
    rows = sorted(archive.best(2), key=lambda c: c.id)
    assert len(rows) == 2 and archive.count() == 2
    for c, start in zip(rows, starts, strict=True):  # the construction's own score, verified
        assert c.initial and c.ok and c.code == SLEEPER and c.score == start


def test_a_broken_starter_stops_the_run_naming_it(tmp_path, pool):
    with pytest.raises(ConfigError, match=r"starter program failed on initial construction 0 "
                                          r"\(crash\)(.|\n)*RuntimeError: boom"):
        seed(tmp_path, pool, BROKEN)
