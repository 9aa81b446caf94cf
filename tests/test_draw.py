"""Environments draw their best artefact for the report (the optional `draw` of the API).

Real artefacts of each environment on real matplotlib axes; each check ties the picture to the
artefact (what is drawn is what was scored), and the rendered PNG is not blank.
"""

import io

import numpy as np
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.patches import Circle, Polygon, StepPatch

from environments.ahc039 import AHC039Environment
from environments.ahc039.problem import format_input, parse_output
from environments.ahc058 import AHC058Environment
from environments.ahc_common import compile_cpp
from environments.ahc_common.cpp import run_binary
from environments.autocorrelation import AC1Environment
from environments.circle_packing import CirclePacking26
from environments.denoising import DenoisingEnvironment
from environments.denoising.env import baseline_program
from environments.erdos import ErdosEnvironment
from environments.toy import ToyEnvironment


def draw(env, artifact, metrics=None):
    fig = Figure()
    ax = fig.subplots()
    assert env.draw(artifact, ax, metrics) is True
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    px = imread(io.BytesIO(buf.getvalue()), format="png")
    assert px.reshape(-1, px.shape[2]).std(axis=0).max() > 0.01  # not blank
    return ax


def test_erdos_draws_the_step_function():
    env = ErdosEnvironment()
    art = env.initial_artifacts(1, seed=0)[0]
    ax = draw(env, art)
    steps = [p for p in ax.patches if isinstance(p, StepPatch)]
    assert steps and np.allclose(steps[0].get_data().values, art)
    assert f"{env.score_artifact(art):.10f}" in ax.get_title()


def test_circle_packing_draws_every_circle():
    env = CirclePacking26()
    art = env.initial_artifacts(1, seed=0)[0]
    ax = draw(env, art)
    circles = [p for p in ax.patches if isinstance(p, Circle)]
    assert len(circles) == 26
    assert np.allclose(sorted(c.get_radius() for c in circles), sorted(r for _, _, r in art))
    assert f"{env.score_artifact(art):.10f}" in ax.get_title()


def test_autocorrelation_draws_the_sequence():
    env = AC1Environment()
    art = env.initial_artifacts(1, seed=0)[0]
    ax = draw(env, art)
    assert np.allclose(ax.patches[0].get_data().values, art)


def test_toy_draws_the_counted_digits():
    env = ToyEnvironment()
    ax = draw(env, [3, 12, -1, 7])
    assert [b.get_height() for b in ax.patches] == [3, 9, 0, 7]


def test_denoising_draws_its_metrics():
    env = DenoisingEnvironment(data="synthetic", time_budget_s=10)
    stored = {"mse_norm": 0.25, "poisson_norm": 0.99, "score": 0.62}
    art = {"program": baseline_program("low_rank"), "seed": 0}
    ax = draw(env, art, stored)
    assert [b.get_height() for b in ax.patches] == [0.25, 0.99, 0.62]
    ax = draw(env, art, {})  # nothing stored (an initial state): its program is re-run
    ev = env.verify(art)
    assert np.allclose([b.get_height() for b in ax.patches],
                       [ev.metrics["mse_norm"], ev.metrics["poisson_norm"], ev.score])


def test_ahc039_draws_the_net_over_the_fish():
    env = AHC039Environment(cases=1)
    art = env.initial_artifacts(1, seed=5)[0]
    ax = draw(env, art)
    nets = [p for p in ax.patches if isinstance(p, Polygon)]
    _, case = env.case_set()[0]
    out = run_binary(compile_cpp(art["program"]).binary, format_input(case).encode(),
                     args=("5",)).output  # the net of the artefact's own seed
    assert len(nets) == 1 and np.array_equal(nets[0].get_xy()[:-1], parse_output(out))
    assert f"= {env.verify(art).score:.0f}" in ax.get_title()  # one case: total = its score
    assert sum(len(c.get_offsets()) for c in ax.collections) == 2 * len(case.mackerels)


def test_an_environment_without_a_picture_draws_nothing():
    env = AHC058Environment(cases=1)
    fig = Figure()
    ax = fig.subplots()
    assert env.draw(env.initial_artifacts(1, seed=0)[0], ax) is False
    assert not ax.has_data()
