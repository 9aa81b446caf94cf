"""The denoising environment: split, metrics by hand, output checks, sandbox runs, baselines."""

import importlib.util
import json
import math

import numpy as np
import pytest

from discover import prompt
from discover.environment import InvalidArtifact, Parent
from discover.prompt import render
from discover.registry import load_environment
from environments.denoising import (
    Anchors,
    DenoisingEnvironment,
    baseline_program,
    check,
    evaluate_denoised,
    mse,
    poisson,
    split_counts,
    synthetic,
)
from environments.denoising import data as dataset
from environments.denoising.scoring import log_normalise

HAVE_ANNDATA = importlib.util.find_spec("anndata") is not None
HAVE_CELLTYPIST = importlib.util.find_spec("celltypist") is not None


@pytest.fixture(scope="module")
def env():
    return DenoisingEnvironment(data="synthetic", time_budget_s=10)


@pytest.fixture(scope="module")
def magic_eval(env):
    return env.evaluate(baseline_program("magic"), None, seed=3)


# --- data and split -------------------------------------------------------------------------

def test_split_preserves_every_count():
    x = synthetic(seed=1).x
    s = split_counts(x, 0.9, seed=7)
    assert np.array_equal(s.train + s.test, x)  # exactly, entry by entry
    assert s.train.min() >= 0 and s.test.min() >= 0
    assert abs(s.train.sum() / x.sum() - 0.9) < 0.01  # about 90% of the molecules
    again = split_counts(x, 0.9, seed=7)
    assert np.array_equal(again.train, s.train) and again.digest == s.digest
    other = split_counts(x, 0.9, seed=8)
    assert not np.array_equal(other.train, s.train) and other.digest != s.digest
    with pytest.raises(ValueError, match="train_frac"):
        split_counts(x, 1.0)


def test_synthetic_is_seeded_and_has_structure():
    a, b, c = synthetic(seed=0), synthetic(seed=0), synthetic(seed=1)
    assert np.array_equal(a.x, b.x) and not np.array_equal(a.x, c.x)
    assert a.x.dtype == np.int64 and (a.x.sum(axis=0) > 0).all()  # unexpressed genes dropped
    assert len(a.genes) == a.x.shape[1] and len(a.cells) == a.x.shape[0]
    mean, var = a.x.mean(axis=0), a.x.var(axis=0)
    assert np.median(var[mean > 1] / mean[mean > 1]) > 1.5  # overdispersed, not Poisson


def test_counts_csv_and_integer_check(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text(",g1,g2,g3\nc1,0,2.00000000001,0\nc2,1.0,0.9999999999,0\n")
    counts = dataset.drop_unexpressed(dataset.read_counts_csv(f))
    assert counts.x.tolist() == [[0, 2], [1, 1]] and counts.genes == ["g1", "g2"]
    assert counts.cells == ["c1", "c2"]
    with pytest.raises(ValueError, match="raw counts"):
        dataset.as_counts(np.array([[0.5, 1.0]]), "m")
    with pytest.raises(ValueError, match="raw counts"):
        dataset.as_counts(np.array([[-1.0, 1.0]]), "m")


def test_top_genes_keeps_the_most_expressed():
    counts = dataset.Counts(np.array([[5, 0, 1], [5, 2, 0]]), ["a", "b", "c"], ["x", "y"], "t")
    top = dataset.top_genes(counts, 2)
    assert top.genes == ["a", "b"] and top.x.tolist() == [[5, 0], [5, 2]]


# --- metrics by hand ------------------------------------------------------------------------

def test_log_normalise_by_hand():
    got = log_normalise(np.array([[1.0, 3.0], [0.0, 0.0]]))
    assert got[0].tolist() == pytest.approx([math.log1p(2500), math.log1p(7500)], rel=1e-15)
    assert got[1].tolist() == [0.0, 0.0]  # an empty cell stays zero, as in scanpy


def test_mse_by_hand():
    test, denoised = np.array([[1.0, 1.0]]), np.array([[2.0, 6.0]])  # 5000/5000 vs 2500/7500
    want = ((math.log1p(5000) - math.log1p(2500)) ** 2
            + (math.log1p(5000) - math.log1p(7500)) ** 2) / 2
    assert mse(test, denoised) == pytest.approx(want, rel=1e-12)
    assert mse(test, 7 * test) == 0.0  # scale of a cell does not matter


def test_poisson_by_hand_in_openproblems_argument_order():
    # d = Y * sum(test) / sum(train) = [1, 1] * 2 / 4; loss = mean(test - d * log(test + 1e-6))
    test, y = np.array([[0.0, 2.0]]), np.array([[1.0, 1.0]])
    want = ((0 - 0.5 * math.log(1e-6)) + (2 - 0.5 * math.log(2 + 1e-6))) / 2
    assert poisson(test, y, train_total=4.0) == pytest.approx(want, rel=1e-12)


def test_perfect_is_one_and_no_denoising_is_zero():
    s = split_counts(synthetic(seed=2).x, 0.9, seed=0)
    anchors = Anchors.of(s.train, s.test)
    assert anchors.mse_perfect == 0.0
    perfect = evaluate_denoised(s.test.astype(float), s.train, s.test, anchors)
    none = evaluate_denoised(s.train.astype(float), s.train, s.test, anchors)
    assert perfect["mse_norm"] == 1.0 and perfect["poisson_norm"] == pytest.approx(1.0, abs=1e-12)
    assert perfect["score"] == pytest.approx(1.0, abs=1e-12) and perfect["poisson_pass"]
    assert none["score"] == 0.0 and none["poisson_norm"] == 0.0 and not none["poisson_pass"]


def test_normalised_poisson_is_capped_in_the_score():
    # the swapped-order loss is linear in Y: mass where test >= 2 drives it far below perfect
    s = split_counts(synthetic(seed=2).x, 0.9, seed=0)
    anchors = Anchors.of(s.train, s.test)
    y = np.where(s.test >= 2, float(s.train.sum()), 0.0)
    got = evaluate_denoised(y, s.train, s.test, anchors)
    assert got["poisson_norm"] > 10
    assert got["score"] == pytest.approx((got["mse_norm"] + 1.0) / 2)


@pytest.mark.parametrize("value, message", [
    ([[1.0, 2.0], [3.0, 4.0]], "must return a numpy array, got list"),
    (np.ones((2, 3)), "shape (2, 3); it must have the shape of X_train, (2, 2)"),
    (np.ones((2, 2), dtype=complex), "dtype complex128"),
    (np.ones((2, 2), dtype=bool), "dtype bool"),
    (np.array([[1.0, np.nan], [1.0, 1.0]]), "1 non-finite values, e.g. nan at cell 0, gene 1"),
    (np.array([[1.0, 1.0], [np.inf, 1.0]]), "inf at cell 1, gene 0"),
    (np.array([[1.0, 1.0], [1.0, -1e-9]]), "1 negative values, e.g. -1e-09 at cell 1, gene 1"),
    (np.array([[1.0, 11.0], [1.0, 1.0]]), "absurd magnitude: 11 at cell 0, gene 1 exceeds"),
    (np.zeros((2, 2)), "all zero"),
])
def test_check_refuses(value, message):
    train = np.array([[4, 1], [2, 3]])  # total 10
    with pytest.raises(InvalidArtifact) as e:
        check(value, train)
    assert message in str(e.value)
    assert check(np.array([[1, 2], [3, 4]]), train).dtype == np.float64  # ints are fine


# --- the environment ------------------------------------------------------------------------

def test_registered_and_options():
    env = load_environment("denoising", data="synthetic", n_genes=50)
    assert isinstance(env, DenoisingEnvironment) and env.problem.split.train.shape[1] == 50
    assert env.direction == "max" and env.describe()["name"] == "denoising"
    with pytest.raises(ValueError, match="unknown option.*n_gene"):
        DenoisingEnvironment(n_gene=5)
    with pytest.raises(ValueError, match="unknown data 'pbmc'"):
        DenoisingEnvironment(data="pbmc").problem  # noqa: B018


@pytest.mark.skipif(HAVE_ANNDATA, reason="anndata is installed")
def test_h5ad_without_anndata_says_what_to_install(tmp_path):
    with pytest.raises(ImportError, match=r"pip install discover\[h5ad\]"):
        DenoisingEnvironment(data=str(tmp_path / "pbmc.h5ad"))
    with pytest.raises(ImportError, match=r"pip install discover\[h5ad\]"):
        dataset.load_h5ad(tmp_path / "pbmc.h5ad")


@pytest.mark.skipif(not HAVE_ANNDATA, reason="needs anndata (pip install discover[h5ad])")
def test_h5ad_counts_layer(tmp_path):
    import anndata

    x = synthetic(seed=4).x  # the default size: a 30 x 40 matrix is too dense for the loss
    adata = anndata.AnnData(X=np.log1p(x.astype(np.float32)), layers={"counts": x})
    adata.write_h5ad(tmp_path / "d.h5ad")
    env = DenoisingEnvironment(data=str(tmp_path / "d.h5ad"))
    assert np.array_equal(env.problem.counts.x, x)


def test_magic_baseline_in_the_sandbox(env, magic_eval):
    ev = magic_eval
    assert ev.ok, ev.log
    assert 0 < ev.score < 1 and ev.reward == ev.score
    assert ev.metrics["poisson_norm"] >= 0.97  # its small output scale (see scoring.py)
    assert ev.score == pytest.approx((ev.metrics["mse_norm"] + ev.metrics["poisson_norm"]) / 2)
    art = ev.artifact
    assert art["program"] == baseline_program("magic") and art["seed"] == 3
    assert art["data"] == env.problem.split.digest
    json.dumps(art)  # the archive stores it as JSON


def test_baselines_order_on_synthetic(env, magic_eval):
    low = env.evaluate(baseline_program("low_rank"), None, seed=0)
    none = env.evaluate(baseline_program("no_denoising"), None, seed=0)
    assert low.ok and low.metrics["mse_norm"] > 0 and low.score > magic_eval.score
    assert not none.ok and none.failure == "invalid_artifact"
    assert "normalised Poisson 0.0000 is below 0.97" in none.log
    assert none.metrics["score"] == 0.0 and none.reward == env.failure_reward


def test_verify_reruns_the_program(env, magic_eval):
    again = env.verify(magic_eval.artifact)
    assert again.ok and again.score == magic_eval.score
    assert again.artifact["output_sha256"] == magic_eval.artifact["output_sha256"]
    other = DenoisingEnvironment(data="synthetic", split_seed=1)
    ev = other.verify(magic_eval.artifact)
    assert not ev.ok and ev.failure == "invalid_artifact" and "scored on data" in ev.log
    for bad, message in [([1, 2], "JSON object"), ({"seed": 1}, "no 'program'"),
                         ({"program": "x", "seed": "1"}, "'seed' must be an integer")]:
        ev = env.verify(bad)
        assert not ev.ok and message in ev.log
    with pytest.raises(InvalidArtifact, match="no 'program'"):
        env.score_artifact({"program": " "})


@pytest.mark.parametrize("body, kind, message", [
    ("    return X_train[:, :5]\n", "invalid_artifact", "it must have the shape of X_train"),
    ("    return X_train - 1\n", "invalid_artifact", "negative values"),
    ("    return X_train * np.nan\n", "invalid_artifact", "non-finite"),
    ("    raise RuntimeError('boom')\n", "crash", "boom"),
    ("    return 'counts'\n", "invalid_output", "not numeric"),
])
def test_bad_programs(env, body, kind, message):
    ev = env.evaluate("import numpy as np\n\ndef denoise(X_train, budget_s, seed):\n" + body,
                      None, seed=0)
    assert not ev.ok and ev.failure == kind and message in ev.log
    assert ev.reward == env.failure_reward < env.reward(-1e9)


def test_initial_state_and_prompt(env, magic_eval, tmp_path):
    (art,) = env.initial_artifacts(4, seed=3)
    assert art == {"program": baseline_program("magic_mcv"), "seed": 3}
    prompt = render(env, Parent(code=None, artifact=art, score=magic_eval.score,
                                      parent_score=None))
    n_cells, n_genes = env.problem.split.train.shape
    assert f"{n_cells} x {n_genes}" in prompt and "def denoise(X_train, budget_s, seed)" in prompt
    assert f"none -> {magic_eval.score:.4f}" in prompt and "0.71" in prompt
    f = tmp_path / "mine.py"
    f.write_text(baseline_program("low_rank"))
    assert env.initial_artifacts(1, 0, init_file=str(f)) == [{"program": f.read_text(),
                                                               "seed": 0}]
    g = tmp_path / "art.json"
    g.write_text(json.dumps(magic_eval.artifact))
    assert env.load_artifact(g) == magic_eval.artifact
    g.write_text(json.dumps({"seed": 0}))
    with pytest.raises(InvalidArtifact, match="no 'program'"):
        env.load_artifact(g)


# --- the default data (one test) -------------------------------------------------------------

README_SCORES = {"low_rank": 0.6089, "magic": 0.5726, "magic_mcv": 0.5989}  # README.md, seed 0


@pytest.mark.skipif(not HAVE_CELLTYPIST, reason="needs `pip install --no-deps celltypist`")
def test_the_cross_validated_magic_is_the_starter_and_its_seed_and_knobs_matter():
    env = DenoisingEnvironment()
    (art,) = env.initial_artifacts(1, seed=3)
    start = env.starter_program()
    assert start == env.program_of(art) == baseline_program("magic_mcv")
    magic = env.evaluate(baseline_program("magic"), None, seed=0)
    runs = {s: env.evaluate(start, None, seed=s) for s in (0, 1)}
    for ev in runs.values():  # cross-validating T and DECAY beats MAGIC's defaults
        assert ev.ok and ev.score > magic.score + 0.01, ev.log
        assert env.verify(ev.artifact).score == ev.score  # the seed is in the artefact
    assert runs[0].score != runs[1].score  # another seed, another score: a copy can improve
    parent = Parent(code=None, artifact=art, score=runs[0].score, parent_score=None)
    assert prompt.prefill(env, parent) == "```python\n# EVOLVE-BLOCK-START\n"
    # the model answers with the block; one changed constant, spliced in, scores higher
    block = start[start.index("\n") + 1:start.index("# EVOLVE-BLOCK-END")]
    answer = "```python\n# EVOLVE-BLOCK-START\n" + block.replace("TRIES = 4", "TRIES = 8") \
        + "# EVOLVE-BLOCK-END\n```"
    program = prompt.program(env, parent, answer)
    assert program == start.replace("TRIES = 4", "TRIES = 8")
    ev = env.evaluate(program, None, seed=0)
    assert ev.ok and ev.score > runs[0].score


def test_default_data_parse_cache_and_baselines(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCOVER_HOME", str(tmp_path))
    counts = dataset.load_celltypist()  # parses the CSV and writes the cache
    assert counts.x.shape == (559, 9810) and counts.cells[0] == "Cell_1"
    assert (tmp_path / "data" / dataset.CACHE_NAME).exists()
    cached = dataset.load_celltypist()
    assert np.array_equal(cached.x, counts.x) and cached.genes == counts.genes
    env = DenoisingEnvironment()
    scores = {}
    for name in ("no_denoising", "low_rank", "magic", "magic_mcv"):
        ev = env.evaluate(baseline_program(name), None, seed=0)
        scores[name] = ev.metrics["score"]
        assert ev.ok == (name != "no_denoising"), ev.log
    assert scores["no_denoising"] == 0.0
    assert scores["low_rank"] > scores["magic"] > scores["no_denoising"]
    for name, want in README_SCORES.items():
        assert scores[name] == pytest.approx(want, abs=1e-3)
