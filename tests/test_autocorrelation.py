"""AC1 and AC2: the formulas by hand and in exact rationals, the published records, refusals,
prompts and initial states, and evaluate() with real programs in the real sandbox."""

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from discover.environment import InvalidArtifact, Parent
from discover.prompt import render
from discover.registry import load_environment
from environments.autocorrelation import (
    AC1Environment,
    AC2Environment,
    exact_ac1,
    exact_ac2,
    score_ac1,
    score_ac2,
    scoring,
    sequence,
)

REFERENCE = Path(__file__).parents[2] / "shared" / "reference" / "ac"
RECORDS = {  # docs/reference-data.md, "Autocorrelation": an independent scorer's full floats
    "ac1_ttt_discover_30000.json": 1.502862898255826,
    "ac1_alphaevolve_v2_1319.json": 1.5031635546815612,
    "ac1_thetaevolve_1319.json": 1.5031324359797769,
    "ac1_thetaevolve_wo_rl_200.json": 1.5068026727114598,
    "ac1_alphaevolve_v1_600.json": 1.5052939684401607,
    "ac1_prev_human_208.json": 1.5097201507458786,
    "ac2_ttt_discover_50000.json": 0.9591797711482711,
    "ac2_alphaevolve_v2_50000.json": 0.9610210777840245,
    "ac2_alphaevolve_v1_50.json": 0.8962799441554076,
}
needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"reference constructions not found at {REFERENCE}")


def program(body):
    return "import numpy as np\n\ndef solve(parent, iters, seed):\n" + body


@pytest.fixture(scope="module")
def ac1():
    return AC1Environment()


@pytest.fixture(scope="module")
def ac2():
    return AC2Environment()


# --- the formulas ---------------------------------------------------------------------------

@pytest.mark.parametrize("a, bound", [
    ([1], Fraction(2)),  # c = [1]: 2 * 1 * 1 / 1^2
    ([5, 5, 5, 5], Fraction(2)),  # constant: max c = n a^2, (sum a)^2 = n^2 a^2
    ([1, 0, 1], Fraction(3)),  # c = [1, 0, 2, 0, 1]: 2 * 3 * 2 / 2^2
    ([2, 1], Fraction(16, 9)),  # c = [4, 4, 1]: 2 * 2 * 4 / 3^2
    ([3, 1, 2], Fraction(13, 6)),  # c = [9, 6, 13, 4, 4]: 2 * 3 * 13 / 6^2
])
def test_ac1_by_hand(a, bound):
    assert exact_ac1(a) == bound
    assert score_ac1(a) == pytest.approx(float(bound), rel=1e-15)


@pytest.mark.parametrize("a, constant", [
    # c = [1], knots [0, 1, 0]: squares (0+0+1) + (1+0+0) = 2; C = 2 / (3 * 1 * 1)
    ([1], Fraction(2, 3)),
    # constant a: f*f is a triangle, whose ratio is 2/3 for any n
    ([1, 1], Fraction(2, 3)),
    ([0.5] * 7, Fraction(2, 3)),
    # c = [4, 4, 1], knots [0, 4, 4, 1, 0]: squares 16 + 48 + 21 + 1 = 86; C = 86 / (3 * 9 * 4)
    ([2, 1], Fraction(43, 54)),
])
def test_ac2_by_hand(a, constant):
    assert exact_ac2(a) == constant
    assert score_ac2(a) == pytest.approx(float(constant), rel=1e-15)


def test_scale_invariant_and_exactly_rescaled():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, 300)
    for factor in (2.0 ** -900, 3.0, 1e250):
        assert score_ac1(a * factor) == pytest.approx(score_ac1(a), rel=1e-14)
        assert score_ac2(a * factor) == pytest.approx(score_ac2(a), rel=1e-14)
    # powers of two change nothing at all; the checked sequence has max in [0.5, 1)
    assert score_ac1(a * 2.0 ** 40) == score_ac1(a)
    s = sequence(a * 1e300)
    assert 0.5 <= s.max() < 1


@pytest.mark.parametrize("n", [1, 2, 9, 300])
def test_float_agrees_with_exact_rationals(n):
    a = np.random.default_rng(n).uniform(0, 1, n) ** 3
    assert abs(score_ac1(a) - float(exact_ac1(a))) < 1e-14
    assert abs(score_ac2(a) - float(exact_ac2(a))) < 1e-14


def test_fft_path_agrees_with_direct():
    a = np.random.default_rng(5).uniform(0, 1, scoring.DIRECT_MAX_N + 1000)
    a[::7] = 0.0  # sparse, like AlphaEvolve's AC2 sequence
    c = np.convolve(a, a)
    fft_c, fft_max = scoring.autoconvolution(a)
    assert fft_max == pytest.approx(c.max(), rel=1e-15)
    assert np.abs(fft_c - c).max() < 1e-12 * c.max() and fft_c.min() >= 0


@needs_reference
@pytest.mark.parametrize("name", sorted(RECORDS))
def test_reference_records(name):
    values = json.loads((REFERENCE / name).read_text())
    env = AC1Environment() if name.startswith("ac1") else AC2Environment()
    ev = env.verify(env.load_artifact(REFERENCE / name))
    assert ev.ok and abs(ev.score - RECORDS[name]) <= 1e-9 * RECORDS[name]
    assert ev.metrics["n"] == len(values) and ev.artifact == values
    if len(values) <= 208:  # exact rationals agree with float64
        exact = exact_ac1(values) if name.startswith("ac1") else exact_ac2(values)
        assert abs(float(exact) - ev.score) < 1e-14


@needs_reference
def test_discover_verify_cli():
    discover = Path(sys.executable).with_name("discover")
    for env, name in (("ac1", "ac1_thetaevolve_wo_rl_200.json"),
                      ("ac2", "ac2_alphaevolve_v1_50.json")):
        out = subprocess.run([str(discover), "verify", env, str(REFERENCE / name)],
                             capture_output=True, text=True, check=True).stdout
        assert abs(float(out) - RECORDS[name]) < 1e-9


# --- refusals -------------------------------------------------------------------------------

@pytest.mark.parametrize("values, message", [
    ([], "empty"),
    ([0.5, float("nan"), 0.5], "contains nan at index 1"),
    ([0.5, 0.5, float("inf")], "contains inf at index 2"),
    ([0.6, -0.1, 0.5, -2], "negative value -0.1 at index 1 (2 negative in all)"),
    ([[0.5, 0.5], [0.5, 0.5]], "not a 1-D list of numbers: got shape (2, 2)"),
    ([[0.5], [0.5, 0.5]], "not a 1-D list of numbers"),
    ("0.5, 0.5", "not a 1-D list of numbers"),
    ([1 + 1j, 2], "not a 1-D list of numbers"),
    ([0.0, 0.0], "all values are zero"),
    (np.full(100_001, 0.5), "length 100001 exceeds 100000"),
])
def test_invalid_artifacts(ac1, ac2, values, message):
    for env in (ac1, ac2):
        with pytest.raises(InvalidArtifact) as e:
            env.score_artifact(values)
        assert message in str(e.value)
        ev = env.verify(values)
        assert not ev.ok and ev.failure == "invalid_artifact" and message in ev.log
    # below any valid reward: AC1 -min(bound, 10) >= -10; AC2 C > 0
    assert ac1.verify(values).reward == ac1.failure_reward < -10
    assert ac2.verify(values).reward == ac2.failure_reward < 0


def test_rewards(ac1, ac2):
    assert ac1.verify([1, 0, 1]).reward == -3.0
    spike = [1.0] + [0.0] * 99  # bound = 2n = 200: capped
    assert ac1.verify(spike).score == 200.0 and ac1.verify(spike).reward == -10.0
    assert ac2.verify([2, 1]).reward == pytest.approx(43 / 54)


def test_load_artifact_forms(ac1, tmp_path):
    f = tmp_path / "a.json"
    for data in ([1, 2], {"sequence": [1, 2]}, {"values": [1, 2]}, {"heights": [1, 2]},
                 {"artifact": [1, 2]}):
        f.write_text(json.dumps(data))
        assert ac1.load_artifact(f) == [1, 2]
    f.write_text(json.dumps({"a": [1]}))
    with pytest.raises(InvalidArtifact, match="sequence, values, heights, artifact"):
        ac1.load_artifact(f)
    f.write_text("[1, 2")
    with pytest.raises(InvalidArtifact, match="cannot read"):
        ac1.load_artifact(f)


# --- initial states and prompts -------------------------------------------------------------

def test_initial_artifacts(ac1, ac2, tmp_path):
    a = ac1.initial_artifacts(3, seed=7)
    assert len(a) == 3 and a == ac1.initial_artifacts(3, seed=7) and a[0] != a[1]
    assert a != ac1.initial_artifacts(3, seed=8)
    for values in a:
        assert len(values) == 600 and 1.9 < ac1.verify(values).score < 2.5
        assert 0.5 < ac2.verify(values).score < 1
    f = tmp_path / "init.json"
    f.write_text(json.dumps({"sequence": [2, 1]}))
    assert ac2.initial_artifacts(4, seed=0, init_file=str(f)) == [[2.0, 1.0]]
    f.write_text(json.dumps([0.1, -0.9]))
    with pytest.raises(InvalidArtifact, match="init.json is invalid: negative value -0.9"):
        ac1.initial_artifacts(1, seed=0, init_file=str(f))


def test_render_prompt(ac1, ac2):
    code = program("    return np.ones(20)\n")
    p = Parent(code=code, artifact=[1.0] * 20, score=1.9, parent_score=2.0,
               stdout="iteration 9: best 1.9\n")
    text = render(ac1, p)
    for part in ("return np.ones(20)", "bound: 2 -> 1.9", "1.5028629", "best 1.9", "n=20",
                 "```python", "solve(parent, iters, seed)", "np.convolve(a, a)", "lower"):
        assert part in text
    text = render(ac2, Parent(code=None, artifact=[1.0] * 600, score=0.6,
                                    parent_score=None))
    assert "a starting sequence of n=600 values, C = 0.6" in text and "0.9610211" in text
    assert "n=600" in text and "higher" in text
    empty = render(ac1, Parent(code=None, artifact=None, score=None, parent_score=None))
    assert "no parent yet" in empty and "(None)" in empty


@pytest.mark.parametrize("name", ["ac1", "ac2"])
def test_the_starter_improves_an_initial_construction(name, ac1, ac2):
    env = {"ac1": ac1, "ac2": ac2}[name]
    (start,) = env.initial_artifacts(1, seed=5)
    before = env.verify(start)
    ev = env.evaluate(env.starter_program(), before.artifact, seed=0)
    assert ev.ok and env.better(ev.score, before.score) and len(ev.artifact) == len(start)
    # what the model is asked to rewrite comes first, and the prompt shows it whole
    starter = env.starter_program()
    assert starter.startswith("# EVOLVE-BLOCK-START\ndef propose(a, rng, t):")
    text = render(env, Parent(code=starter, artifact=ev.artifact, score=ev.score,
                                    parent_score=before.score))
    assert starter.strip() in text and "Rewrite the part between" in text


def test_registered_and_options():
    env = load_environment("ac1", time_budget_s=5)
    assert isinstance(env, AC1Environment) and env.time_budget_s == 5.0
    assert env.direction == "min" and env.target == 1.5028629
    env = load_environment("ac2")
    assert isinstance(env, AC2Environment) and env.direction == "max"
    with pytest.raises(ValueError, match="unknown option.*ac2.*time_budget_s.*iterations"):
        AC2Environment(budget=5)
    assert load_environment("ac1", iterations=7).iterations == 7
    assert AC1Environment().iterations == AC1Environment.iterations >= 1
    assert AC2Environment().iterations == AC2Environment.iterations >= 1
    for bad in (0, "100"):
        with pytest.raises(ValueError, match=r"iterations must be an integer >= 1, got "):
            load_environment("ac2", iterations=bad)


# --- evaluate: real programs in the real sandbox --------------------------------------------

def test_evaluate_valid_program_with_parent(ac1):
    code = program(
        "    assert isinstance(parent, np.ndarray) and parent.dtype == np.float64\n"
        f"    assert isinstance(iters, int) and iters == {ac1.iterations}\n"
        "    rng = np.random.default_rng(seed)\n"
        "    print('claimed bound 0.1')\n"
        "    return np.concatenate([parent, rng.uniform(0, 1, 4)])\n")
    parent = [2.0, 1.0]
    a, b = ac1.evaluate(code, parent, seed=1), ac1.evaluate(code, parent, seed=1)
    assert a.ok and a.artifact[:2] == parent and len(a.artifact) == 6
    assert a.score == b.score and a.artifact == b.artifact  # seeded
    assert a.score == pytest.approx(score_ac1(a.artifact), rel=0) and a.reward == -a.score
    assert "claimed bound 0.1" in a.log and a.metrics["n"] == 6 and a.metrics["wall_s"] > 0


def test_evaluate_failures(ac1, ac2):
    negative = ac1.evaluate(program("    return np.array([1.0, -0.5, 1.0])\n"), [1.0], seed=0)
    assert negative.failure == "invalid_artifact" and "negative value -0.5 at index 1" in \
        negative.log and negative.reward == ac1.failure_reward
    crash = ac2.evaluate(program("    raise RuntimeError('no idea')\n"), [1.0], seed=0)
    assert crash.failure == "crash" and "no idea" in crash.log
    assert crash.reward == ac2.failure_reward
    flat = ac2.evaluate(program("    return np.ones((3, 3))\n"), None, seed=0)
    assert flat.failure == "invalid_output" and "1-D array" in flat.log
    ok = ac2.evaluate(program("    return [2, 1]\n"), None, seed=0)  # a list is fine too
    assert ok.ok and ok.score == pytest.approx(43 / 54) and ok.artifact == [2.0, 1.0]
