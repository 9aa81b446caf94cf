import math
import random

import pytest

from discover.advantages import (
    adaptive_beta,
    compute_advantages,
    entropic_advantages,
    mean_advantages,
    reweighting_kl,
)

LN2 = math.log(2)


def direct_kl(rewards, beta):
    """KL(q_beta || uniform) straight from the definition (fine for moderate beta * r)."""
    w = [math.exp(beta * r) for r in rewards]
    q = [x / sum(w) for x in w]
    return sum(qi * (math.log(qi) + math.log(len(q))) for qi in q if qi > 0)


def reachable(rewards):
    """KL can reach ln 2 only if fewer than half the group ties at the top (max KL = log G/k)."""
    top = max(rewards)
    return len(rewards) > 2 * sum(r == top for r in rewards)


def random_groups(seed=0, n=300):
    rng = random.Random(seed)
    for _ in range(n):
        g = rng.choice([3, 4, 5, 8, 16])
        scale = 10 ** rng.uniform(-4, 9)
        r = [rng.gauss(0, 1) * scale for _ in range(g)]
        if rng.random() < 0.5:  # failures mixed with valid rewards
            for i in rng.sample(range(g), rng.randint(1, g - 1)):
                r[i] = rng.choice([-1e9, -2.0, -1e6 * scale])
        yield r


def test_adaptive_beta_hits_ln2_on_random_groups():
    checked = 0
    for r in random_groups():
        if not reachable(r):
            continue
        beta = adaptive_beta(r)
        assert 0 < beta < 1e6
        assert abs(reweighting_kl(r, beta) - LN2) < 1e-6, (r, beta)
        checked += 1
    assert checked > 200


@pytest.mark.parametrize("rewards", [
    [1.0, 2.0, 3.0],
    [-0.4, -2.0, -2.0, -2.0],  # one valid among failures
    [-0.4, -1e9, -1e9, -1e9, -0.45],
    [-0.4, -0.5, -0.41, -1e9, -2.0, -2.0, -0.6, -0.7],
    [1e6, 2e6, 0.0, 5e5],  # huge scale
    [3e-5, 1e-5, 0.0, 2e-5],  # small scale, still reachable under the cap
    [1e300, -1e300, 0.0],
])
def test_adaptive_beta_edge_groups(rewards):
    beta = adaptive_beta(rewards)
    assert abs(reweighting_kl(rewards, beta) - LN2) < 1e-6
    adv = entropic_advantages(rewards, beta)
    assert all(math.isfinite(a) for a in adv)
    best = max(range(len(rewards)), key=rewards.__getitem__)
    assert adv[best] == max(adv) and adv[best] > 0


def test_kl_matches_definition_and_is_monotone():
    r = [0.3, -1.2, 0.7, 0.0, -0.5]
    prev = -1.0
    for beta in [0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 20.0]:
        kl = reweighting_kl(r, beta)
        assert kl == pytest.approx(direct_kl(r, beta), abs=1e-12)
        assert kl >= prev
        prev = kl
    assert reweighting_kl(r, 1e6) == pytest.approx(math.log(5))  # q is one-hot on the best
    assert math.isfinite(reweighting_kl([-1e9, 0.0, -0.1], 1e6))


def test_bisection_keeps_hi_side():
    r = [1.0, 0.0, 0.5, -0.2]
    beta = adaptive_beta(r)
    assert reweighting_kl(r, beta) >= LN2
    assert reweighting_kl(r, beta * (1 - 1e-9)) < LN2 + 1e-9


def test_cap_when_ln2_is_unreachable():
    assert adaptive_beta([1e-9, 2e-9, 0.0, 3e-9]) == 1e6  # tiny spread: KL(1e6) < ln 2
    assert adaptive_beta([1.0, 1.0, 0.0]) == 1e6  # ties at the top: max KL = log 1.5
    assert adaptive_beta([1e-9, 0.0, 0.0], cap=100.0) == 100.0
    adv = entropic_advantages([1e-9, 2e-9, 0.0, 3e-9], 1e6)
    assert all(math.isfinite(a) for a in adv)


@pytest.mark.parametrize("rewards", [[0.0, -1.0], [-0.4, -2.0], [0.0, -1e9], [1e-3, 0.0],
                                     [5e8, -5e8]])
def test_advantages_stay_bounded_at_group_size_two(rewards):
    adv, metrics = compute_advantages(rewards, "entropic")
    assert metrics["kl"] == pytest.approx(LN2 / 2, abs=1e-6)  # the halved target, reached
    # q = (p, 1 - p) with ln 2 - H(p) = ln 2 / 2; the winner's advantage is p / (1 - p) - 1
    p = max(math.exp(metrics["beta"] * (x - max(rewards))) for x in rewards)
    w = sorted(math.exp(metrics["beta"] * (x - max(rewards))) for x in rewards)
    assert p == 1.0 and 0 < w[0] < 1
    assert max(adv) == pytest.approx(1 / w[0] - 1) and min(adv) == pytest.approx(w[0] - 1)
    assert 6 < max(adv) < 8 and -1 < min(adv) < -0.8  # bounded whatever the reward gap
    best = max(range(2), key=rewards.__getitem__)
    assert adv[best] == max(adv)


def test_a_gap_too_small_for_the_beta_cap_gives_small_advantages_at_g2():
    adv, metrics = compute_advantages([1e-9, 0.0], "entropic")
    assert metrics["beta"] == 1e6 and max(abs(a) for a in adv) < 0.01  # e^(1e6 * 1e-9) - 1


def test_equal_rewards_and_single_sample_give_zero():
    for r in ([5.0, 5.0, 5.0], [-1e9] * 4, [0.0, 0.0], [2.5]):
        assert adaptive_beta(r) == 0.0
        for method in ("entropic", "entropic-fixed", "mean"):
            adv, metrics = compute_advantages(r, method)
            assert adv == [0.0] * len(r)
            assert metrics["kl"] == pytest.approx(0.0, abs=1e-15)
    assert entropic_advantages([3.0], 7.0) == [0.0]
    assert mean_advantages([3.0]) == [0.0]


def test_entropic_formula_direct():
    r, beta = [0.5, -1.0, 0.2, 0.0], 2.0
    e = [math.exp(beta * x) for x in r]  # the shift by max r cancels in the ratio
    expect = []
    for i in range(4):
        z = (sum(e) - e[i]) / 3
        expect.append(e[i] / z - 1)
    adv, metrics = compute_advantages(r, "entropic-fixed", beta=beta)
    assert adv == pytest.approx(expect, rel=1e-9)
    assert metrics == {"beta": 2.0, "kl": pytest.approx(direct_kl(r, 2.0))}


def test_adaptive_uses_its_beta():
    r = [0.5, -1.0, 0.2, 0.0, -2.0]
    adv, metrics = compute_advantages(r, "entropic")
    assert metrics["beta"] == adaptive_beta(r)
    assert metrics["kl"] == pytest.approx(LN2, abs=1e-9)
    assert adv == entropic_advantages(r, metrics["beta"])


def test_mean_formula_direct():
    r = [1.0, -2.0, 4.0, -1e9]
    m = sum(r) / 4
    adv, metrics = compute_advantages(r, "mean")
    assert adv == pytest.approx([x - m for x in r])
    assert metrics["beta"] == 0.0


def test_no_nan_or_inf_anywhere():
    groups = list(random_groups(seed=1, n=200)) + [
        [0.0, -1.0],  # G = 2: ln 2 is KL's supremum; beta grows until rounding reaches it
        [-0.4, -1e9], [1e9, -1e9, 0.0], [1e-12, 0.0, -1e-12], [-2.0, -2.0, -0.4],
    ]
    for r in groups:
        for method in ("entropic", "entropic-fixed", "mean"):
            adv, metrics = compute_advantages(r, method, beta=2.0)
            assert len(adv) == len(r)
            assert all(math.isfinite(a) for a in adv), (r, method, adv)
            assert math.isfinite(metrics["beta"]) and math.isfinite(metrics["kl"])
            assert all(a >= -1.0 for a in adv) or method == "mean"


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="method"):
        compute_advantages([1.0, 2.0], "median")
    with pytest.raises(ValueError, match="finite"):
        compute_advantages([1.0, float("nan")], "entropic")
    with pytest.raises(ValueError, match="finite"):
        adaptive_beta([1.0, float("-inf")])
    with pytest.raises(ValueError, match="empty"):
        compute_advantages([], "mean")
    with pytest.raises(ValueError, match="beta"):
        entropic_advantages([1.0, 2.0], -1.0)
