"""The learnable toy: hand-computed scores, refused artefacts, and prompts whose starter program
really scores what the prompt says (run through the real sandbox)."""

import math

import pytest

from discover.environment import InvalidArtifact, Parent
from discover.extract import extract_code
from discover.prompt import render
from environments.toy import ToyEnvironment
from environments.toy.env import starter_program

ENV = ToyEnvironment()


@pytest.mark.parametrize("artifact, score", [
    ([0], 0.0),
    ([1, 2, 3], 6.0),
    ([9] * 10, 90.0),
    ([9] * 25, 90.0),  # only the first ten count
    ([12, -4, 3.7, 0.2], 9.0 + 0 + 3 + 0),  # clipped to 0..9, fractions floored
    ([[1, 2], [3, 4]], 10.0),  # any shape is read flat
])
def test_scores_by_hand(artifact, score):
    assert ENV.score_artifact(artifact) == score
    ev = ENV.verify(artifact)
    assert ev.ok and ev.score == score and ev.reward == score


@pytest.mark.parametrize("artifact, words", [
    ([], "empty list"), ("nine", "not a list of numbers"), ([1, math.nan], "finite"),
    ([1, None], "finite"), ({"a": 1}, "not a list of numbers"),
])
def test_invalid_artifacts_are_refused_with_a_reason(artifact, words):
    with pytest.raises(InvalidArtifact, match=words):
        ENV.score_artifact(artifact)
    ev = ENV.verify(artifact)
    assert not ev.ok and ev.failure == "invalid_artifact" and ev.reward < 0


def test_the_initial_prompt_shows_a_program_that_scores_what_it_says():
    (start,) = ENV.initial_artifacts(1, seed=0)
    ev = ENV.verify(start)
    prompt = render(ENV, Parent(code=None, artifact=ev.artifact, score=ev.score,
                                      parent_score=None))
    assert f"-> {ev.score:g})" in prompt and "Write an improved solve()" in prompt
    code = extract_code(prompt, "python")
    assert code == starter_program(start)
    run = ENV.evaluate(code, None, seed=0)
    assert run.ok and run.score == ev.score


def test_a_parent_with_a_program_shows_that_program():
    code = "def solve():\n    return [5] * 10\n"
    prompt = render(ENV, Parent(code=code, artifact=[5.0] * 10, score=50.0,
                                      parent_score=6.0))
    assert extract_code(prompt, "python") == code and "6 -> 50" in prompt


def test_starter_program_keeps_the_counted_numbers_only():
    assert starter_program([1.0, 2.0, 3.5] + [7] * 20) == (
        "def solve():\n    return [1, 2, 3.5, 7, 7, 7, 7, 7, 7, 7]\n")


def test_programs_are_run_and_scored_from_what_they_return():
    ok = ENV.evaluate("def solve():\n    print('score: 90')\n    return [9, 9, 1]\n", None, 0)
    assert ok.ok and ok.score == 19.0 and ok.artifact == [9.0, 9.0, 1.0]  # printed claim ignored
    args = ENV.evaluate("def solve(n):\n    return [9] * n\n", None, 0)
    assert not args.ok and args.failure == "crash"
    junk = ENV.evaluate("def solve():\n    return 'nine'\n", None, 0)
    assert not junk.ok and junk.failure in ("invalid_artifact", "invalid_output")
    loop = ToyEnvironment(time_budget_s=0.5).evaluate("def solve():\n    while True: pass\n",
                                                      None, 0)
    assert not loop.ok and loop.failure == "timeout"


def test_unknown_options_are_refused():
    with pytest.raises(ValueError, match="unknown option"):
        ToyEnvironment(budget=3)
