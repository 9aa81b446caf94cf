"""Circle packing: exact feasibility (tolerance 0), the published packings, refusals with
messages that say what is wrong, initial states, and evaluate() in the real sandbox."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from busy import busy_cores

from discover.environment import InvalidArtifact, Parent
from discover.prompt import render
from discover.registry import load_environment
from environments.circle_packing import (
    CirclePacking26,
    CirclePacking32,
    random_packing,
    score,
    violations,
)

REFERENCE = Path(__file__).parents[2] / "shared" / "reference" / "circle_packing"
RECORDS = {  # docs/reference-data.md, "Circle packing": an independent validator's sums
    "ttt_discover_n26.json": (26, 2.6359773947542573),
    "alphaevolve_n26.json": (26, 2.6358627564136983),
    "alphaevolve_n32.json": (32, 2.937944526205518),
    "ttt_discover_n32_regenerated.json": (32, 2.939572499640256),
}
needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"reference constructions not found at {REFERENCE}")
# Near-tangent pairs where float arithmetic and exact arithmetic disagree (found by search).
FLOAT_SAYS_DISJOINT = [[0.48139915579226056, 0.3536166788988659, 0.02049253361767398],
                       [0.46124519457885166, 0.3813820962704598, 0.01381636543797047]]
FLOAT_SAYS_OVERLAP = [[0.6001458690520209, 0.41216350319441597, 0.04846628774655147],
                      [0.494076389772654, 0.6922948799204954, 0.25107389763939086]]


def program(body):
    return "import numpy as np\n\ndef solve(parent, iters, seed):\n" + body


def reference(name):
    return np.array(json.loads((REFERENCE / name).read_text())["circles"])


@pytest.fixture(scope="module")
def env26():
    return CirclePacking26(time_budget_s=2)


# --- feasibility and the score --------------------------------------------------------------

def test_by_hand():
    # two circles of radius 1/4 side by side touch each other and three walls each: valid
    assert score([[0.25, 0.5, 0.25], [0.75, 0.5, 0.25]], 2)[0] == 0.5
    # one circle filling the square; zero radii are allowed anywhere outside it
    assert score([[0.5, 0.5, 0.5], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]], 3)[0] == 0.5
    with pytest.raises(InvalidArtifact, match=r"circles 0 and 1 overlap by 9.1e-13"):
        score([[0.25, 0.5, 0.125], [0.5, 0.5, 0.125 + 2.0 ** -40]], 2)  # by 2^-40


def test_exact_arithmetic_decides_near_tangency():
    c = np.array(FLOAT_SAYS_DISJOINT)
    dx, dy, s = c[0, 0] - c[1, 0], c[0, 1] - c[1, 1], c[0, 2] + c[1, 2]
    assert dx * dx + dy * dy >= s * s  # float arithmetic would accept it
    with pytest.raises(InvalidArtifact, match="circles 0 and 1 overlap by [0-9.]+e-1[6-9]"):
        score(c, 2)
    c = np.array(FLOAT_SAYS_OVERLAP)
    dx, dy, s = c[0, 0] - c[1, 0], c[0, 1] - c[1, 1], c[0, 2] + c[1, 2]
    assert dx * dx + dy * dy < s * s  # float arithmetic would refuse it
    assert score(c, 2)[0] == c[0, 2] + c[1, 2]


@needs_reference
@pytest.mark.parametrize("name", sorted(RECORDS))
def test_reference_packings(name):
    n, total = RECORDS[name]
    env = load_environment(f"circle_packing_{n}")
    ev = env.verify(env.load_artifact(REFERENCE / name))
    assert ev.ok and abs(ev.score - total) <= 1e-9 * total and ev.reward == ev.score
    assert ev.artifact == reference(name).tolist()


@needs_reference
def test_no_tolerance():
    # Radii grown by a few 1e-15: a 1e-12 tolerance (the upstream verifier's) passes all of these.
    c = reference("ttt_discover_n26.json")
    c[0, 2] += 4e-15
    assert violations(c) == ["circle 0 leaves the square (y - r = -5.27e-16 < 0)"]
    c = reference("ttt_discover_n26.json")
    c[4, 2] += 4e-15
    assert violations(c)[1] == "circle 4 leaves the square (x + r = 1.0000000000000011 > 1, " \
        "by 1.1e-15)"
    with pytest.raises(InvalidArtifact, match=r"^circle 4 leaves the square \(y - r = -2.11e-15 "
                                              r"< 0\) \(2 violated constraints in all\)$"):
        score(c, 26)


@needs_reference
def test_discover_verify_cli():
    discover = Path(sys.executable).with_name("discover")
    for name, (n, total) in RECORDS.items():
        out = subprocess.run([str(discover), "verify", f"circle_packing_{n}",
                              str(REFERENCE / name)], capture_output=True, text=True, check=True)
        assert abs(float(out.stdout) - total) < 1e-9
    bad = subprocess.run([str(discover), "verify", "circle_packing_32",
                          str(REFERENCE / "ttt_discover_n26.json")], capture_output=True, text=True)
    assert bad.returncode == 1 and "expected 32 circles" in bad.stderr


# --- refusals -------------------------------------------------------------------------------

def grid(n=26):
    """A valid packing: a 6 x 5 grid of circles of radius 0.09, the first n of them."""
    xs, ys = np.meshgrid(np.arange(6) / 6 + 1 / 12, np.arange(5) / 5 + 0.1)
    return np.column_stack([xs.ravel(), ys.ravel(), np.full(30, 0.08)])[:n]


def moved(c, i, dy=0.0, dr=0.0):
    c = c.copy()
    c[i, 1:] += [dy, dr]
    return c


@pytest.mark.parametrize("change, message", [
    (lambda c: c[:25], "expected 26 circles as rows (x, y, r): got shape (25, 3)"),
    (lambda c: c[:, :2], "got shape (26, 2)"),
    (lambda c: c.ravel(), "got shape (78,)"),
    (lambda c: c.tolist()[:-1] + [[0.5, 0.5]], "not an (26, 3) array of circles"),
    (lambda c: "circles", "not an (26, 3) array of circles (x, y, r): got str"),
    (lambda c: np.where(np.arange(78).reshape(26, 3) == 16, np.nan, c), "nan at index (5, 1)"),
    (lambda c: np.where(np.arange(78).reshape(26, 3) == 8, -0.01, c),
     "circle 2 has a negative radius (-0.01)"),
    (lambda c: moved(c, 5, dr=0.006),
     "circle 5 leaves the square (x + r = 1.0026666666666668 > 1, by 0.0027)"),
    (lambda c: moved(moved(c, 3, dr=0.0035), 4, dr=0.0035),
     "circles 3 and 4 overlap by 0.00033"),
    (lambda c: moved(c, 0, dy=-0.03),
     "circle 0 leaves the square (y - r = -0.01 < 0)"),
    (lambda c: moved(c, 0, dy=-0.03, dr=0.01),  # the worst is named first
     "circle 0 leaves the square (y - r = -0.02 < 0) (3 violated constraints in all)"),
])
def test_invalid_packings(env26, change, message):
    assert env26.verify(grid()).ok
    bad = change(grid())
    with pytest.raises(InvalidArtifact) as e:
        env26.score_artifact(bad)
    assert message in str(e.value)
    ev = env26.verify(bad)
    assert not ev.ok and ev.failure == "invalid_artifact" and message in ev.log
    assert ev.reward == env26.failure_reward < 0  # valid sums of radii are >= 0


def test_load_artifact_forms(env26, tmp_path):
    f = tmp_path / "p.json"
    rows = grid().tolist()
    for data in ({"circles": rows, "sum_radii": 99.0}, {"artifact": rows}, rows):
        f.write_text(json.dumps(data))
        assert env26.load_artifact(f) == rows
        assert env26.verify(env26.load_artifact(f)).score == pytest.approx(26 * 0.08)
    f.write_text(json.dumps({"centres": rows}))
    with pytest.raises(InvalidArtifact, match="circles, artifact; got centres"):
        env26.load_artifact(f)


# --- initial states and prompts -------------------------------------------------------------

def test_initial_artifacts(tmp_path):
    env = CirclePacking32()
    a = env.initial_artifacts(5, seed=3)
    assert len(a) == 5 and a == env.initial_artifacts(5, seed=3) and a[0] != a[1]
    for c in a:
        ev = env.verify(c)
        assert ev.ok and 1.0 < ev.score < 2.9
    for seed in range(20):  # every random start is exactly feasible
        assert violations(random_packing(32, np.random.default_rng(seed))) == []
    f = tmp_path / "init.json"
    f.write_text(json.dumps({"circles": grid(32).tolist()}))
    with pytest.raises(InvalidArtifact, match="init.json is invalid: expected 32 circles"):
        env.initial_artifacts(1, seed=0, init_file=str(f))
    f.write_text(json.dumps({"circles": grid(26).tolist()}))
    assert CirclePacking26().initial_artifacts(2, seed=0, init_file=str(f)) == [grid().tolist()]


def test_render_prompt(env26):
    p = Parent(code=program("    return parent\n"), artifact=grid().tolist(), score=2.08,
               parent_score=1.5, stdout="done\n")
    text = render(env26, p)
    for part in ("return parent", "sum of radii: 1.5 -> 2.08", "2.6359774", "shape (26, 3)",
                 "NO tolerance", "1e-12", "Place 26 circles", "done", "```python"):
        assert part in text
    assert "Place 32 circles" in CirclePacking32().statement()


@pytest.mark.parametrize("n", [26, 32])
def test_the_starter_improves_an_initial_packing(n):
    env = load_environment(f"circle_packing_{n}")
    (start,) = env.initial_artifacts(1, seed=4)
    before = env.verify(start)
    ev = env.evaluate(env.starter_program(), before.artifact, seed=0)
    assert ev.ok and ev.score > before.score + 0.1, (ev.log, ev.score, before.score)
    # the block holds the two knobs only: the model answers with it, propose() stays the parent's
    assert env.starter_program().startswith("# EVOLVE-BLOCK-START\nK = 1 ")
    assert "def propose(c, rng, t):" in env.starter_program().split("# EVOLVE-BLOCK-END")[1]


def test_the_starters_repair_is_exactly_feasible_whatever_the_centres():
    ns = {}
    exec(CirclePacking26().starter_program(), ns)  # our own code: no sandbox needed
    rng = np.random.default_rng(0)
    cases = [np.array(FLOAT_SAYS_DISJOINT), np.array(FLOAT_SAYS_OVERLAP),
             np.tile([0.5, 0.5, 0.3], (5, 1)),  # every circle on one centre
             np.array([[0.0, 0.3, 0.2], [1.0, 1.2, 0.1], [-0.5, 0.5, 0.0]]),  # on, off the walls
             *(np.column_stack([rng.uniform(-0.1, 1.1, (26, 2)), rng.uniform(0, 0.3, 26)])
               for _ in range(20))]
    for c in cases:
        fixed = ns["repair"](c)
        assert violations(fixed) == [] and fixed[:, 2].min() >= 0


def test_registered():
    env = load_environment("circle_packing_32", time_budget_s=3)
    assert isinstance(env, CirclePacking32) and env.n == 32 and env.time_budget_s == 3.0
    assert env.direction == "max" and env.target == 2.9395725
    assert load_environment("circle_packing_26").target == 2.6359774
    with pytest.raises(ValueError, match="unknown option.*time_budget_s.*iterations"):
        CirclePacking26(n=30)
    assert load_environment("circle_packing_26", iterations=7).iterations == 7
    assert CirclePacking26().iterations == CirclePacking26.iterations >= 1
    assert CirclePacking32().iterations == CirclePacking32.iterations >= 1
    for bad in (0, "100"):
        with pytest.raises(ValueError, match=r"iterations must be an integer >= 1, got "):
            load_environment("circle_packing_32", iterations=bad)


# --- evaluate: real programs in the real sandbox --------------------------------------------

def test_evaluate_valid_invalid_crash(env26):
    grow = program(
        "    assert parent.shape == (26, 3) and parent.dtype == np.float64\n"
        "    c = parent.copy()\n"
        "    c[:, 2] += 0.004 * (seed == 1)\n"
        "    print('sum', c[:, 2].sum())\n"
        "    return c\n")
    ok = env26.evaluate(grow, grid().tolist(), seed=0)
    assert ok.ok and ok.score == pytest.approx(26 * 0.08) and ok.reward == ok.score
    assert ok.artifact == grid().tolist() and "sum 2.08" in ok.log
    grown = env26.evaluate(grow, grid().tolist(), seed=1)  # 2 * 0.084 > 1/6, 0.084 > 1/12
    assert grown.failure == "invalid_artifact" and "violated constraints in all" in grown.log
    assert "circle 0 leaves the square (x - r = -0.000667 < 0)" in grown.log
    assert grown.reward == env26.failure_reward
    crash = env26.evaluate(program("    return parent[99]\n"), grid().tolist(), seed=0)
    assert crash.failure == "crash" and "IndexError" in crash.log
    flat = env26.evaluate(program("    return np.zeros(78)\n"), None, seed=0)
    assert flat.failure == "invalid_output" and "2-D array" in flat.log


def test_the_starter_counts_work_not_seconds_so_a_busy_machine_changes_nothing():
    """The same program, parent and seed give the same packing on an idle machine and on one
    whose every core is busy; another seed gives another packing."""
    env = CirclePacking26(iterations=2000)  # fewer moves than a run's, for a quick test
    (start,) = env.initial_artifacts(1, seed=4)
    starter = env.starter_program()
    assert "import time" not in starter and "solve(parent, iters, seed)" in starter
    idle = env.evaluate(starter, start, seed=0)
    with busy_cores(2):
        busy = env.evaluate(starter, start, seed=0)
    assert idle.ok and busy.ok, (idle.log, busy.log)
    assert busy.artifact == idle.artifact and busy.score == idle.score
    assert idle.score > env.verify(start).score
    other = env.evaluate(starter, start, seed=1)
    assert other.ok and other.artifact != idle.artifact
