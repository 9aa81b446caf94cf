"""AHC039 purse seine: exact scorer on hand-made polygons, generator, public inputs, baseline."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from discover import prompt
from discover.environment import InvalidArtifact, Parent
from discover.registry import load_environment
from environments.ahc039 import AHC039Environment
from environments.ahc039.problem import (
    COORD_MAX,
    MAX_PERIMETER,
    Case,
    N,
    check_polygon,
    format_input,
    generate,
    inside,
    parse_input,
    parse_output,
    score_output,
    score_polygon,
)
from environments.ahc_common import compile_cpp

REFERENCE = Path(__file__).parents[2] / "shared" / "reference" / "ahc039" / "inputs"
needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"public AHC039 inputs not found at {REFERENCE}")
BASELINE_PUBLIC_TOTAL = 99_893  # environments/ahc039/README.md: baseline on inputs 0000-0049


def case_of(mackerels, sardines):
    return Case(np.array(mackerels, dtype=np.int64).reshape(-1, 2),
                np.array(sardines, dtype=np.int64).reshape(-1, 2))


def poly(*pts):
    return np.array(pts, dtype=np.int64)


def answer(*pts):
    return f"{len(pts)}\n" + "".join(f"{x} {y}\n" for x, y in pts)


@pytest.fixture(scope="module")
def env():
    return AHC039Environment(cases=2, workers=2)


@pytest.fixture(scope="module")
def baseline(env):
    source = env.baseline_file.read_text()
    assert compile_cpp(source).failure is None  # compiled once; later runs hit the cache
    return source


# --- the scorer on hand-made cases -------------------------------------------------------------

def test_rectangle_counts_points_inside_and_on_the_boundary():
    case = case_of([(10, 10), (20, 20), (30, 30), (50, 50), (30, 5)],
                   [(15, 15), (20, 30), (31, 30), (60, 60)])
    # (10,10) and (30,30) are corners, (20,30) lies on the top edge; (31,30), (30,5) are outside
    assert score_output(case, answer((10, 10), (30, 10), (30, 30), (10, 30))) == 3 - 2 + 1
    # clockwise order and a vertex in the middle of a straight edge change nothing
    assert score_output(case, answer((10, 10), (10, 30), (30, 30), (30, 20), (30, 10))) == 2
    # more sardines than mackerels: clamped at 0
    assert score_polygon(case, poly((14, 14), (21, 14), (21, 31), (14, 31)))[:3] == (0, 1, 2)


def test_inclusion_matches_a_union_of_rectangles():
    # A comb: a base bar and three teeth, drawn as one polygon with two notches.
    comb = poly((0, 0), (100, 0), (100, 100), (80, 100), (80, 20), (60, 20), (60, 100),
                (40, 100), (40, 20), (20, 20), (20, 100), (0, 100))
    rects = [(0, 100, 0, 20), (0, 20, 20, 100), (40, 60, 20, 100), (80, 100, 20, 100)]
    xs, ys = np.meshgrid(np.arange(-3, 104), np.arange(-3, 104))
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1)
    want = np.zeros(len(pts), dtype=bool)
    for x0, x1, y0, y1 in rects:
        want |= (x0 <= pts[:, 0]) & (pts[:, 0] <= x1) & (y0 <= pts[:, 1]) & (pts[:, 1] <= y1)
    check_polygon(comb)
    assert np.array_equal(inside(comb, pts), want)
    assert np.array_equal(inside(comb[::-1], pts), want)  # orientation does not matter


@pytest.mark.parametrize("pts, words", [
    ([(0, 0), (10, 0), (10, 0), (10, 10), (0, 10)], "are the same point"),  # repeated vertex
    ([(0, 0), (10, 0), (10, 10), (5, 15), (0, 10)], "not axis-parallel"),
    ([(0, 0), (10, 0), (5, 0), (5, 10), (0, 10)], "doubles back"),
    ([(0, 0), (30, 0), (30, 30), (10, 30), (10, 10), (20, 10), (20, 20), (0, 20)],
     "intersects itself"),  # edges cross
    ([(0, 0), (20, 0), (20, 20), (0, 20), (0, 10), (10, 10), (10, 15), (0, 15)],
     "intersects itself"),  # non-adjacent edges overlap along x = 0
    ([(0, 0), (10, 0), (10, 10), (20, 10), (20, 20), (10, 20), (10, 10), (0, 10)],
     "same point"),  # two squares meeting at a corner: a vertex used twice
    ([(0, 0), (COORD_MAX, 0), (COORD_MAX, COORD_MAX), (0, COORD_MAX), (0, 60000), (1, 60000),
      (1, 50000), (0, 50000)], "perimeter 400002 exceeds"),
    ([(0, 0), (COORD_MAX + 1, 0), (COORD_MAX + 1, 5), (0, 5)], "outside"),
    ([(0, 0), (10, 0), (10, 10)], "3 vertices"),
])
def test_each_invalid_polygon_rule(pts, words):
    with pytest.raises(InvalidArtifact, match=words):
        check_polygon(poly(*pts))
    with pytest.raises(InvalidArtifact):  # and through the output path: a wrong answer
        score_output(case_of([(1, 1)], [(2, 2)]), answer(*pts))


def test_longest_legal_perimeter_and_largest_polygon():
    full = poly((0, 0), (COORD_MAX, 0), (COORD_MAX, COORD_MAX), (0, COORD_MAX))
    check_polygon(full)  # perimeter exactly 400000
    case = generate(3)
    assert score_polygon(case, full)[0] == 1  # every fish: N - N + 1
    # a comb of 250 teeth: 1000 vertices, scored on 10,000 points
    teeth = []
    for k in range(250):
        x = 400 * k
        teeth += [(x, 1000), (x, 1300), (x + 200, 1300), (x + 200, 1000)]
    teeth[0], teeth[-1] = (0, 500), (99_800, 500)  # the comb's back closes along y = 500
    comb = poly(*teeth)
    assert len(comb) == 1000 and np.abs(np.roll(comb, -1, 0) - comb).sum() <= MAX_PERIMETER
    got, a, b = score_polygon(case, comb)
    assert got == max(0, a - b + 1)
    # points around the comb, its vertices and its edges' midpoints, against a plain loop
    rng = np.random.default_rng(0)
    probe = np.concatenate([rng.integers(0, [COORD_MAX + 1, 2001], size=(400, 2)),
                            comb[::7], (comb[::5] + np.roll(comb, -1, 0)[::5]) // 2])
    assert inside(comb, probe).tolist() == [_brute_inside(comb, p) for p in probe.tolist()]
    with pytest.raises(InvalidArtifact, match="vertex count: 1001 is out of range"):
        parse_output(answer(*comb.tolist(), (99_900, 500)))


def _brute_inside(polygon, p):
    """Independent check: on an edge, or an odd number of crossings of a ray going +y."""
    x, y = p
    pts = polygon.tolist()
    crossings = 0
    for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1], strict=True):
        if min(x0, x1) <= x <= max(x0, x1) and min(y0, y1) <= y <= max(y0, y1):
            return True
        if y0 == y1 and y0 > y and min(x0, x1) <= x < max(x0, x1):
            crossings += 1
    return crossings % 2 == 1


def test_output_parsing():
    square = [(0, 0), (5, 0), (5, 5), (0, 5)]
    bigger = [(0, 0), (9, 0), (9, 9), (0, 9)]
    assert parse_output(answer(*square) + answer(*bigger)).tolist() == [list(p) for p in bigger]
    for text, words in (("4\n0 0\n1 0\n", "4 vertices announced, 2 given"),
                        ("4 0 0 1 x 1 1 0 1", "'x' is not an integer"),
                        ("2\n0 0\n1 1\n", "vertex count: 2 is out of range")):
        with pytest.raises(InvalidArtifact, match=words):
            parse_output(text)


# --- the output read as the official tester reads it (ahc_common/tester_parse.py) --------------

SQUARE = [(0, 0), (5, 0), (5, 5), (0, 5)]
ONE_FISH = case_of([(1, 1)], [(50, 50)])  # the square holds the mackerel: a - b + 1 = 2


def test_a_coordinate_beyond_64_bits_is_a_wrong_answer_not_a_crash():
    text = answer((0, 0), (10**20, 0), (10**20, 5), (0, 5))
    with pytest.raises(InvalidArtifact, match="polygon 0, vertex 1: x coordinate: "
                                              "'100000000000000000000' does not fit a 64-bit"):
        score_output(ONE_FISH, text)
    with pytest.raises(InvalidArtifact, match="out of range"):  # fits i64, outside the field
        score_output(ONE_FISH, answer((0, 0), (2**62, 0), (2**62, 5), (0, 5)))


def test_every_polygon_is_range_checked_not_only_the_last():
    assert score_output(ONE_FISH, answer(*SQUARE)) == 2
    bad_first = answer((0, 0), (COORD_MAX + 1, 0), (COORD_MAX + 1, 5), (0, 5)) + answer(*SQUARE)
    with pytest.raises(InvalidArtifact, match="polygon 0, vertex 1: x coordinate: 100001"):
        score_output(ONE_FISH, bad_first)
    with pytest.raises(InvalidArtifact, match="polygon 0: vertex count: 3"):
        score_output(ONE_FISH, "3 0 0 1 0 1 1\n" + answer(*SQUARE))
    # a first polygon in range but not simple is not checked: only the last one is scored
    bow = answer((0, 0), (5, 0), (0, 5), (5, 5))
    assert score_output(ONE_FISH, bow + answer(*SQUARE)) == 2


@pytest.mark.parametrize("text", ["", "\n", "  \n\t\n"])
def test_an_empty_output_scores_one(text):
    assert parse_output(text) is None
    assert score_output(ONE_FISH, text) == 1


@pytest.mark.parametrize("token", ["5_0", "\uff15", "\u0665", "5.0", "5e0", "0x5", "+", "--5"])
def test_numbers_are_ascii_digits_with_an_optional_sign_only(token):
    text = answer(*SQUARE).replace("5 0", f"{token} 0", 1)
    if token in ("5_0", "\uff15", "\u0665"):
        int(token)  # what Python's int() would have read, and the official tester does not
    with pytest.raises(InvalidArtifact, match="is not an integer"):
        score_output(ONE_FISH, text)


def test_a_sign_is_read_as_rust_reads_an_i64():
    text = "+4\n-0 +0\n+5 0\n5 5\n0 005\n"  # "-0" is 0, leading zeros and "+" are fine
    assert parse_output(text).tolist() == [list(p) for p in SQUARE]
    with pytest.raises(InvalidArtifact, match="vertex count: '-4' is not an unsigned"):
        parse_output("-4\n0 0\n5 0\n5 5\n0 5\n")


@pytest.mark.parametrize("sep", ["\x1c", "\x1f", "\u200b"])
def test_only_rust_whitespace_separates_numbers(sep):
    """Python's str.split() also splits on U+001C..U+001F; the official tester does not."""
    assert len(f"5{sep}0".split()) == (2 if sep != "\u200b" else 1)
    with pytest.raises(InvalidArtifact, match="is not an integer"):
        score_output(ONE_FISH, answer(*SQUARE).replace("5 0", f"5{sep}0", 1))
    for ws in ("\r", "\x0c", "\x0b", "\u3000", "\u2028"):  # Rust's whitespace: separators
        assert score_output(ONE_FISH, answer(*SQUARE).replace(" ", ws)) == 2


# --- the generator -------------------------------------------------------------------------------

def test_generator_follows_the_statement():
    case = generate(11)
    pts = np.concatenate([case.mackerels, case.sardines])
    assert case.mackerels.shape == case.sardines.shape == (N, 2)
    assert pts.min() >= 0 and pts.max() <= COORD_MAX
    assert len(np.unique(pts, axis=0)) == 2 * N  # distinct across both kinds
    # clusters centred in [20000, 80000]^2 with sigma <= 5000: almost every fish near there
    near = ((pts >= 20_000 - 4 * 5000) & (pts <= 80_000 + 4 * 5000)).all(axis=1)
    assert near.mean() > 0.99
    again = generate(11)
    assert np.array_equal(again.mackerels, case.mackerels)
    assert np.array_equal(again.sardines, case.sardines)
    assert not np.array_equal(generate(12).mackerels, case.mackerels)
    back = parse_input(format_input(case))
    assert np.array_equal(back.mackerels, case.mackerels)
    assert np.array_equal(back.sardines, case.sardines)


def test_parse_input_rejects_bad_cases():
    for text, words in (("", "empty"), ("2\n0 0\n1 1\n2 2\n", "needs 8 coordinates"),
                        ("1\n0 0\n0 0\n", "not distinct"), ("1\n0 0\n0 100001\n", "outside")):
        with pytest.raises(ValueError, match=words):
            parse_input(text)


# --- public inputs and the baseline ----------------------------------------------------------

def public_cases():
    return [(p.name, parse_input(p.read_text())) for p in sorted(REFERENCE.glob("*.txt"))]


@needs_reference
def test_public_inputs_parse_and_match_the_generator_rules():
    paths = sorted(REFERENCE.glob("*.txt"))
    assert len(paths) == 50
    for p in paths:
        text = p.read_text()
        case = parse_input(text)  # N, ranges and distinctness are checked there
        assert len(case.mackerels) == len(case.sardines) == N
        assert format_input(case).split() == text.split()


@needs_reference
def test_baseline_on_public_inputs_is_stable(env, baseline):
    ev = env.score_program(baseline, public_cases())
    assert ev.ok, ev.log
    assert ev.score == BASELINE_PUBLIC_TOTAL
    assert len(ev.metrics["case_scores"]) == 50 and min(ev.metrics["case_scores"]) > 0


def test_environment_runs_the_baseline(env, baseline):
    ev = env.verify(baseline)
    assert ev.ok, ev.log
    assert ev.score == sum(ev.metrics["case_scores"]) and len(ev.metrics["case_scores"]) == 2
    assert ev.reward == ev.score / 2 and ev.artifact == {"program": baseline, "seed": 0}
    assert env.score_artifact(baseline) == ev.score
    assert env.language == "cpp" and env.direction == "max" and env.cpu_slots == 2


def test_cli_verify_prints_the_total(tmp_path, baseline):
    prog = tmp_path / "prog.cpp"
    prog.write_text(baseline)
    res = subprocess.run([sys.executable, "-m", "discover.cli", "verify", "ahc039", str(prog)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    total = float(res.stdout.strip())
    want = load_environment("ahc039").verify(baseline)  # the default case set (4 cases)
    assert total == want.score and len(want.metrics["case_scores"]) == 4


def test_the_starter_is_a_seeded_search_that_beats_the_baseline(env, baseline):
    """argv[1] seeds the starter's random search: another seed, another score (so a child that
    copies its parent can still score higher), and the artefact's seed re-scores it exactly."""
    base = env.verify(baseline)
    runs = [env.evaluate(env.starter_program(), None, seed=s) for s in (0, 1)]
    for ev in runs:
        assert ev.ok and ev.score > base.score, ev.log
        assert env.verify(ev.artifact).score == ev.score
    assert runs[0].artifact["seed"] == 0 and runs[0].score != runs[1].score


def test_a_block_answer_that_changes_one_knob_scores_higher(env):
    """The editable block holds constants that matter: the model's answer is the block alone,
    spliced into the parent program."""
    source = env.starter_program()
    parent = Parent(code=None, artifact={"program": source, "seed": 0}, score=None,
                    parent_score=None)
    old, new = "constexpr int MOVES = 300;", "constexpr int MOVES = 3000;"
    block = source[source.index("// EVOLVE-BLOCK-START"):source.index("// EVOLVE-BLOCK-END")]
    answer = "```cpp\n" + block.replace(old, new) + "// EVOLVE-BLOCK-END\n```"
    program = prompt.program(env, parent, answer)
    assert program == source.replace(old, new)
    before, after = env.verify(parent.artifact), env.evaluate(program, parent.artifact, seed=0)
    assert before.ok and after.ok, after.log
    assert after.score > before.score


def test_cli_verify_names_a_coordinate_beyond_64_bits(tmp_path):
    """A program whose net has a vertex at x = 1e20: a wrong answer with its reason, not a
    traceback (before, int64 conversion raised OverflowError out of parse_output)."""
    prog = tmp_path / "prog.cpp"
    prog.write_text('#include <cstdio>\nint main() { puts("4\\n0 0\\n100000000000000000000 0\\n'
                    '100000000000000000000 5\\n0 5"); }\n')
    res = subprocess.run([sys.executable, "-m", "discover.cli", "verify", "ahc039", str(prog),
                          "--set", "env.cases=1"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    assert "invalid:" in res.stderr and "case 0 (seed 0): wrong answer: polygon 0, vertex 1: " \
        "x coordinate: '100000000000000000000' does not fit a 64-bit integer" in res.stderr, \
        res.stderr
