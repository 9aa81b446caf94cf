"""AHC058 apple machines: exact simulator on hand-computed plans, generator, public inputs."""

import math
import re
from pathlib import Path

import pytest

from discover import prompt
from discover.environment import InvalidArtifact, Parent
from environments.ahc058 import AHC058Environment
from environments.ahc058.problem import (
    A_MAX,
    C_MAX,
    Case,
    case_score,
    format_input,
    generate,
    parse_input,
    parse_output,
    score_output,
    simulate,
)
from environments.ahc_common import compile_cpp, run_binary

REFERENCE = Path(__file__).parents[2] / "shared" / "reference" / "ahc058" / "inputs"
needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"public AHC058 inputs not found at {REFERENCE}")
BASELINE_PUBLIC_TOTAL = 153_523_838  # environments/ahc058/README.md: baseline on 0000-0049

# Two ids, two levels, four turns: small enough to follow by hand.
SMALL = Case(A=(1, 3), C=((1, 2), (5, 100)), n=2, levels=2, turns=4, start=1)


def plan(*actions):
    return "\n".join(actions) + "\n"


@pytest.fixture(scope="module")
def env():
    return AHC058Environment(cases=2, workers=2)


@pytest.fixture(scope="module")
def baseline(env):
    source = env.baseline_file.read_text()
    comp = compile_cpp(source)  # compiled once; later runs of the same source hit the cache
    assert comp.failure is None, comp.log
    return source, comp.binary


# --- the simulator on hand-computed plans -----------------------------------------------------

def test_level_zero_plan_by_hand():
    # t0: pay 1 (0 left), P00 = 1, +1 -> 1;  t1: +1 -> 2;  t2: pay 2 (0 left), P00 = 2, +2 -> 2;
    # t3: +2 -> 4.  log2(4) = 2.
    text = plan("0 0", "-1", "0 0", "-1")
    assert simulate(SMALL, parse_output(SMALL, text)) == 4
    assert score_output(SMALL, text) == 200_000


def test_level_one_machines_work_from_the_next_turn():
    case = Case(A=(1, 3), C=((1, 2), (5, 100)), n=2, levels=2, turns=4, start=10)
    # t0: pay 5 -> 5, P10 = 1; level 0 makes nothing (P00 = 0); then B00 = 1 + 1 = 2.
    # t1: pay 1 -> 4, P00 = 1; level 0 first: +1*2*1 -> 6; then B00 = 3.
    # t2: +3 -> 9, B00 = 4;  t3: +4 -> 13.  round(1e5 * log2 13) = round(370043.97) = 370044.
    text = plan("1 0", "0 0", "-1", "-1")
    assert simulate(case, parse_output(case, text)) == 13
    assert score_output(case, text) == 370_044


def test_large_numbers_stay_exact():
    case = Case(A=(7,), C=((10**29,),), n=1, levels=1, turns=3, start=10**30)
    apples = simulate(case, parse_output(case, plan("0 0", "-1", "-1")))
    assert apples == 9 * 10**29 + 21  # a float would lose the 21
    assert score_output(case, plan("-1", "-1", "-1")) == round(1e5 * 30 * math.log2(10))
    assert case_score(2**57) == 5_700_000 and case_score(0) == 0 and case_score(1) == 0


def test_overspend_is_a_wrong_answer():
    # paying exactly what one has is allowed (t0); one apple short is not (t1 costs 2, has 1)
    with pytest.raises(InvalidArtifact, match="turn 1: strengthening machine 0\\^0 costs 2 "
                                              "apples but only 1 are left"):
        score_output(SMALL, plan("0 0", "0 0", "-1", "-1"))


def test_output_format_rules():
    assert score_output(SMALL, "# a comment\n0 0\n\n-1\n# another\n0 0\n-1\n") == 200_000
    for text, words in ((plan("-1", "-1", "-1"), "expected 4 actions, got 3"),
                        (plan("2 0", "-1", "-1", "-1"), "line 1: level: 2 is out of range"),
                        (plan("0 2", "-1", "-1", "-1"), "line 1: id: 2 is out of range"),
                        (plan("0 -1", "-1", "-1", "-1"), "id: '-1' is not an unsigned"),
                        (plan("0", "-1", "-1", "-1"), "expected 'i j' or '-1'"),
                        (plan("-1 0", "-1", "-1", "-1"), "expected 'i j' or '-1'"),
                        (plan("0 0 0", "-1", "-1", "-1"), "expected 'i j' or '-1'"),
                        (plan("a b", "-1", "-1", "-1"), "level: 'a' is not an integer")):
        with pytest.raises(InvalidArtifact, match=words):
            score_output(SMALL, text)


# --- the output read as the official tester reads it (ahc_common/tester_parse.py) --------------

def test_only_the_first_t_lines_are_actions():
    case = generate(3)  # T = 500
    first = ["-1"] * 499 + ["0 0"]  # one strengthening at the end: one apple spent
    want = score_output(case, plan(*first))
    for extra in ("0 0", "-1", "garbage", "99 99", "0 -0"):  # line 501: ignored, whatever it is
        assert score_output(case, plan(*first, extra)) == want
    assert score_output(case, plan(*first, *["0 0"] * 10)) == want
    # on the small case too: a fifth line is not a fifth action
    assert score_output(SMALL, plan("0 0", "-1", "0 0", "-1", "0 0")) == 200_000


@pytest.mark.parametrize("line, action", [
    ("-01", None), ("-0001", None), ("+0 +0", (0, 0)), ("00 00", (0, 0)), ("-0 0", (0, 0)),
    ("1 +1", (1, 1)), ("\u30001\u3000 1 ", (1, 1))])
def test_an_action_is_read_by_integer_value(line, action):
    assert parse_output(SMALL, plan(line, "-1", "-1", "-1"))[0] == action


@pytest.mark.parametrize("line, words", [
    ("0 -0", "id: '-0' is not an unsigned integer"),  # an id takes no minus sign
    ("0 0_0", "'0_0' is not an unsigned"), ("0 \uff10", "is not an unsigned"),
    ("\uff10 0", "level: '\uff10' is not an integer"), ("-\u0661", "is not an integer"),
    ("0 0.0", "is not an unsigned"), ("- 1", "'-' is not an integer"),
    ("99999999999999999999 0", "does not fit a 64-bit integer")])
def test_numbers_are_ascii_digits_with_an_optional_sign_only(line, words):
    with pytest.raises(InvalidArtifact, match=words):
        parse_output(SMALL, plan(line, "-1", "-1", "-1"))


def test_lines_split_on_newline_only():
    """Python's splitlines() also splits on a lone \\r, form feed, \\x1c, U+2028, ...; the
    official tester (str::lines) does not, so those join two actions into one bad line."""
    assert parse_output(SMALL, "0 0\r\n-1\r\n0 0\r\n-1\r\n")[0] == (0, 0)  # CRLF is fine
    for sep in ("\r", "\x0c", "\x0b", "\x1c", "\x1e", "\x85", "\u2028", "\u2029"):
        text = f"0 0{sep}-1\n0 0\n-1\n-1\n"
        assert len(text.splitlines()) == 5  # what Python alone would have read
        with pytest.raises(InvalidArtifact, match="line 1"):
            parse_output(SMALL, text)


# --- the generator and public inputs ----------------------------------------------------------

def check_case_rules(case):
    assert (case.n, case.levels, case.turns, case.start) == (10, 4, 500, 1)
    assert case.A[0] == 1 and list(case.A) == sorted(case.A)
    assert all(1 <= a <= A_MAX for a in case.A)
    assert case.C[0][0] == 1
    for i in range(case.levels):
        for j in range(case.n):
            if i == j == 0:
                continue
            base = case.A[j] * 500**i  # C = round(base * 10^u), u in [0, 2]
            assert round(base) <= case.C[i][j] <= round(base * 100) <= C_MAX


def test_generator_follows_the_statement():
    for seed in range(20):
        check_case_rules(generate(seed))
    assert generate(5) == generate(5) and generate(5) != generate(6)
    case = generate(5)
    assert parse_input(format_input(case)) == case


def test_parse_input_rejects_bad_cases():
    for text, words in (("10 4", "N L T K"), ("2 1 3 1\n1 2\n", "expected 8 integers"),
                        ("1 1 x 1", "not all integers"), ("0 4 500 1", "bad N L T K")):
        with pytest.raises(ValueError, match=words):
            parse_input(text)


@needs_reference
def test_public_inputs_parse_and_match_the_generator_rules():
    paths = sorted(REFERENCE.glob("*.txt"))
    assert len(paths) == 50
    for p in paths:
        text = p.read_text()
        case = parse_input(text)
        check_case_rules(case)
        assert format_input(case).split() == text.split()


@needs_reference
def test_baseline_agrees_with_the_simulator_on_public_inputs(env, baseline):
    source, binary = baseline
    for p in sorted(REFERENCE.glob("*.txt"))[:3]:
        case = parse_input(p.read_text())
        run = run_binary(binary, p.read_bytes())
        assert run.status == "ok", run.reason
        # the baseline tracks its apples in __int128: an independent count of the same plan
        reported = int(re.search(r"final apples: (\d+)", run.stderr).group(1))
        apples = simulate(case, parse_output(case, run.output))
        assert apples == reported and apples > 2**30
    public = [(p.name, parse_input(p.read_text())) for p in sorted(REFERENCE.glob("*.txt"))]
    ev = env.score_program(source, public)
    assert ev.ok, ev.log
    assert ev.score == BASELINE_PUBLIC_TOTAL and len(ev.metrics["case_scores"]) == 50


def test_environment_runs_the_baseline(env, baseline):
    source, _ = baseline
    ev = env.verify(source)
    assert ev.ok, ev.log
    assert ev.score == sum(ev.metrics["case_scores"]) and ev.reward == ev.score / 2
    assert all(s > 2_000_000 for s in ev.metrics["case_scores"])  # > 2^20 apples a case
    assert "final apples" in ev.log  # the stderr tail that the next prompt shows


def test_the_starter_is_a_seeded_search_that_beats_the_baseline(env, baseline):
    """argv[1] seeds the starter's random search: another seed, another score (so a child that
    copies its parent can still score higher), and the artefact's seed re-scores it exactly."""
    base = env.verify(baseline[0])
    runs = [env.evaluate(env.starter_program(), None, seed=s) for s in (0, 1)]
    for ev in runs:
        assert ev.ok and ev.score > base.score, ev.log
        assert env.verify(ev.artifact).score == ev.score
    assert runs[0].artifact["seed"] == 0 and runs[0].score != runs[1].score
    # with no random settings it is the baseline's planner: the same case scores
    plain = env.evaluate(env.starter_program().replace("TRIES = 20", "TRIES = 0"), None, seed=1)
    assert plain.metrics["case_scores"] == base.metrics["case_scores"]


def test_a_block_answer_that_changes_one_knob_scores_higher(env):
    """The editable block holds constants that matter: the model's answer is the block alone,
    spliced into the parent program."""
    source = env.starter_program()
    parent = Parent(code=None, artifact={"program": source, "seed": 0}, score=None,
                    parent_score=None)
    old, new = "const int TRIES = 20;", "const int TRIES = 60;"
    block = source[source.index("// EVOLVE-BLOCK-START"):source.index("// EVOLVE-BLOCK-END")]
    answer = "```cpp\n" + block.replace(old, new) + "// EVOLVE-BLOCK-END\n```"
    program = prompt.program(env, parent, answer)
    assert program == source.replace(old, new)
    before, after = env.verify(parent.artifact), env.evaluate(program, parent.artifact, seed=0)
    assert before.ok and after.ok, after.log
    assert after.score > before.score
