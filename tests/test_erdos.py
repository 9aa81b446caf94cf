"""The Erdős minimum overlap environment: C5 vs published records, verification, sandbox."""

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from busy import busy_cores

from discover.environment import InvalidArtifact, Parent
from discover.prompt import render
from discover.registry import load_environment
from environments.erdos import ErdosEnvironment, exact_c5, normalise, score
from environments.erdos.scoring import c5, c5_direct, c5_fft

REFERENCE = Path(__file__).parents[2] / "shared" / "reference" / "erdos"
RECORDS = {  # docs/reference-data.md, "Erdős": an independent scorer's values
    "ttt_discover_600.json": 0.3808753232,
    "alphaevolve_95.json": 0.3809230351,
    "haugland2016_51.json": 0.3809268534,
}
needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"reference constructions not found at {REFERENCE}")


def reference(name):
    return json.loads((REFERENCE / name).read_text())


def program(body):
    return "import numpy as np\n\ndef solve(parent, iters, seed):\n" + body


@pytest.fixture(scope="module")
def env():
    return ErdosEnvironment(time_budget_s=2)


# --- the objective --------------------------------------------------------------------------

@needs_reference
@pytest.mark.parametrize("name", sorted(RECORDS))
def test_reference_records(name):
    values = reference(name)
    got, h = score(values)
    assert abs(got - RECORDS[name]) < 1e-9
    assert len(h) == len(values)
    # exact rationals agree with float64 (docs/reference-data.md: within 2e-16)
    assert abs(float(exact_c5(h)) - got) < 1e-15
    assert abs(c5_fft(h) - got) < 1e-13


def test_constant_half_by_hand():
    # h = 1/2: shift 0 gives n * (1/2)(1/2) = n/4, other shifts fewer terms; times 2/n = 1/2
    for n in (1, 2, 7, 50):
        assert score([0.5] * n)[0] == 0.5
        assert exact_c5([0.5] * n) == Fraction(1, 2)
    assert c5(np.full(100_000, 0.5)) == pytest.approx(0.5, abs=1e-12)  # the FFT path


def test_small_case_by_hand():
    # h = [1/4, 3/4], 1 - h = [3/4, 1/4], dx = 1. Shifts: h1*(1-h0) = 9/16 (the max),
    # h0*(1-h0) + h1*(1-h1) = 3/8, h0*(1-h1) = 1/16.
    assert score([0.25, 0.75])[0] == 0.5625
    assert exact_c5([0.25, 0.75]) == Fraction(9, 16)
    # the indicator of [0, 1] attains the upper bound C5 = 1 (shift by 1: full overlap)
    assert score([1, 1, 0, 0])[0] == 1.0


def test_rescaling_to_sum_n_over_2(env):
    got, h = score([0.5, 1.5])  # sum 2 -> rescaled by 1/2 to sum n/2 = 1
    assert h.tolist() == [0.25, 0.75] and got == 0.5625
    ev = env.verify([2, 2, 2, 2])
    assert ev.ok and ev.score == 0.5 and ev.artifact == [0.5] * 4  # the stored h is rescaled
    # float noise just above 1 is clipped, not refused
    _, h = score([1 + 5e-10, 1 - 5e-10, 0, 0])
    assert h.max() <= 1.0


@pytest.mark.parametrize("n", [1, 2, 3, 17, 600, 4096, 5000,
                               pytest.param(12_000, marks=pytest.mark.slow)])  # 30-60 s direct
def test_fft_agrees_with_direct(n):
    rng = np.random.default_rng(n)
    h = normalise(rng.uniform(0.2, 0.8, n))
    assert abs(c5_fft(h) - c5_direct(h)) < 1e-13
    assert abs(c5(h) - c5_direct(h)) < 1e-13


# --- refusals -------------------------------------------------------------------------------

@pytest.mark.parametrize("values, message", [
    ([], "empty"),
    ([0.5, float("nan"), 0.5], "contains NaN at index 1"),
    ([0.5, 0.5, float("inf")], "contains inf at index 2"),
    ([0.2, 1.7, 0.1], "value 1.275 at index 1 is outside [0, 1] after rescaling to sum n/2"),
    ([0.6, -0.1, 0.5], "at index 1 is outside [0, 1]"),
    ([[0.5, 0.5], [0.5, 0.5]], "not a 1-D list of numbers"),
    ([[0.5], [0.5, 0.5]], "not a 1-D list of numbers"),
    ("0.5, 0.5", "not a 1-D list of numbers"),
    ([0.0, 0.0], "sum is 0"),
    (np.full(100_001, 0.5), "length 100001 exceeds 100000"),
])
def test_invalid_artifacts(env, values, message):
    with pytest.raises(InvalidArtifact) as e:
        env.score_artifact(values)
    assert message in str(e.value)
    ev = env.verify(values)
    assert not ev.ok and ev.failure == "invalid_artifact" and message in ev.log
    assert ev.reward == env.failure_reward < -1.0  # below any valid reward, -C5 >= -1


def test_load_artifact_forms(env, tmp_path):
    f = tmp_path / "a.json"
    for data in ([0.5, 0.5], {"sequence": [0.5, 0.5]}, {"values": [0.5, 0.5]},
                 {"artifact": [0.5, 0.5]}):
        f.write_text(json.dumps(data))
        assert env.load_artifact(f) == [0.5, 0.5]
    f.write_text(json.dumps({"h": [0.5]}))
    with pytest.raises(InvalidArtifact, match="sequence, values, artifact"):
        env.load_artifact(f)
    f.write_text("[0.5, 0.5")
    with pytest.raises(InvalidArtifact, match="cannot read"):
        env.load_artifact(f)


# --- initial states and prompts -------------------------------------------------------------

def test_initial_artifacts_valid_and_seeded(env):
    a = env.initial_artifacts(3, seed=7)
    assert len(a) == 3 and a == env.initial_artifacts(3, seed=7)
    assert a != env.initial_artifacts(3, seed=8)
    assert a[0] != a[1]
    for h in a:
        ev = env.verify(h)
        assert ev.ok and 0.4 < ev.score < 0.6 and abs(sum(h) - len(h) / 2) < 1e-9


def test_initial_artifacts_from_file(env, tmp_path):
    f = tmp_path / "init.json"
    f.write_text(json.dumps({"sequence": [1.0, 3.0]}))
    assert env.initial_artifacts(4, seed=0, init_file=str(f)) == [[0.25, 0.75]]
    f.write_text(json.dumps([0.1, 0.9, 5.0]))
    with pytest.raises(InvalidArtifact, match="init.json is invalid: value .* at index 2"):
        env.initial_artifacts(1, seed=0, init_file=str(f))


def test_render_prompt(env):
    code = program("    return np.full(20, 0.5)\n")
    p = Parent(code=code, artifact=[0.5] * 20, score=0.41, parent_score=0.45,
               stdout="iteration 9: best 0.41\n")
    text = render(env, p)
    for part in ("return np.full(20, 0.5)", "0.45000000 -> 0.41000000", "0.380876",
                 "best 0.41", "`parent`", "n=20", "```python", "solve(parent, iters, seed)"):
        assert part in text
    start = render(env, Parent(code=None, artifact=[0.5] * 50, score=0.5,
                                     parent_score=None))
    assert "starting step function" in start and "n=50" in start and "C5 = 0.5" in start
    empty = render(env, Parent(code=None, artifact=None, score=None, parent_score=None))
    assert "no parent yet" in empty


def test_long_code_keeps_head_and_tail(env):
    body = "".join(f"    x{i} = {i}  # filler line\n" for i in range(600))
    code = "import numpy as np\n\ndef solve(parent, iters, seed):\n" + body + \
        "    return FINAL_LINE\n"
    text = render(env, Parent(code=code, artifact=[0.5], score=0.5, parent_score=None))
    assert "import numpy as np" in text and "return FINAL_LINE" in text
    assert "characters cut" in text and "x300 = 300" not in text
    assert len(text) < 6000  # about 1500 tokens for the small model's context


def test_registered_and_options():
    env = load_environment("erdos", time_budget_s=5)
    assert isinstance(env, ErdosEnvironment) and env.time_budget_s == 5.0
    assert env.direction == "min" and env.target == 0.380876
    with pytest.raises(ValueError, match="unknown option.*time_budget.*iterations"):
        ErdosEnvironment(time_budget=5)
    assert env.iterations == ErdosEnvironment.iterations >= 1
    assert load_environment("erdos", iterations=7).iterations == 7


@pytest.mark.parametrize("bad", [0, -3, "100", 2.5, True, None])
def test_iterations_must_be_a_positive_integer(bad):
    if bad is None:  # None means the default
        assert ErdosEnvironment(iterations=None).iterations == ErdosEnvironment.iterations
        return
    with pytest.raises(ValueError, match=r"iterations must be an integer >= 1, got "):
        load_environment("erdos", iterations=bad)


# --- evaluate: real programs in the real sandbox --------------------------------------------

def test_evaluate_valid_program_and_parent_handed_in(env):
    code = program(
        "    if parent is None:\n"
        "        return np.full(30, 0.5)\n"
        "    rng = np.random.default_rng(seed)\n"
        "    assert isinstance(parent, np.ndarray) and parent.dtype == np.float64\n"
        f"    assert isinstance(iters, int) and iters == {env.iterations}\n"
        "    return parent * 2 + rng.uniform(0, 1e-3, len(parent))\n")
    ev = env.evaluate(code, None, seed=0)
    assert ev.ok and ev.score == 0.5 and ev.reward == -0.5
    assert ev.metrics["n"] == 30 and ev.metrics["wall_s"] > 0
    parent = env.initial_artifacts(1, seed=3)[0]
    a, b = env.evaluate(code, parent, seed=1), env.evaluate(code, parent, seed=1)
    assert a.ok and a.score == b.score and a.artifact == b.artifact  # seeded
    assert abs(sum(a.artifact) - 25.0) < 1e-9  # stored rescaled
    assert abs(a.score - env.verify(parent).score) < 1e-3
    assert env.verify(a.artifact).score == pytest.approx(a.score, abs=1e-12)


def test_evaluate_failures(env):
    nan = env.evaluate(program("    return np.array([0.5, np.nan, 0.5])\n"), None, seed=0)
    assert nan.failure == "invalid_artifact" and "NaN at index 1" in nan.log
    assert nan.reward == env.failure_reward
    wrong = env.evaluate("import numpy as np\n\ndef solver(parent, iters, seed):\n"
                         "    return np.full(4, 0.5)\n", None, seed=0)
    assert wrong.failure == "crash" and "solve" in wrong.log
    flat = env.evaluate(program("    return np.full((4, 4), 0.5)\n"), None, seed=0)
    assert flat.failure == "invalid_output" and "1-D" in flat.log
    big = env.evaluate(program("    return np.array([0.1, 0.1, 0.9, 2.0])\n"), None, seed=0)
    assert big.failure == "invalid_artifact" and "index 3" in big.log


def test_printed_score_is_ignored(env):
    code = program("    print('C5 = 0.0001 (verified)')\n    return np.array([0.25, 0.75])\n"
                   "\nC5 = 0.0001\n")
    ev = env.evaluate(code, None, seed=0)
    assert ev.ok and ev.score == 0.5625 and "0.0001" in ev.log


def test_the_starter_counts_work_not_seconds_so_a_busy_machine_changes_nothing():
    """The same program, parent and seed give the same artefact on an idle machine and on one
    whose every core is busy (the starter once ran until a wall-clock deadline, and its C5 then
    moved with the machine's load); another seed gives another artefact."""
    env = ErdosEnvironment()  # the default work and wall limit, as a run has them
    (start,) = env.initial_artifacts(1, seed=3)
    starter = env.starter_program()
    assert "import time" not in starter and "solve(parent, iters, seed)" in starter
    idle = env.evaluate(starter, start, seed=0)
    with busy_cores(2):
        busy = env.evaluate(starter, start, seed=0)
    assert idle.ok and busy.ok, (idle.log, busy.log)
    assert busy.artifact == idle.artifact and busy.score == idle.score
    assert busy.reward == idle.reward and idle.score < env.verify(start).score - 0.02
    other = env.evaluate(starter, start, seed=1)
    assert other.ok and other.artifact != idle.artifact
