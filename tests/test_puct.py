"""PUCT selection: the formula on hand-computed cases, lineage blocking, statistics, the set."""

import math

import pytest

from discover.puct import Puct


def tree() -> Puct:
    """Initial 1 (R=0) with children 2 (R=5), 3 (R=2) and a failure 4."""
    p = Puct()
    p.add_initial(1, 0.0, "k1")
    p.observe_group(1, [(2, 5.0, True, "k2"), (3, 2.0, True, "k3"), (4, -1e9, False, "")])
    return p


def test_single_initial_state_score() -> None:
    p = Puct()
    p.add_initial(1, -3.0, "a")
    # N=1 so P=1; no non-initial state so scale=1; T=0, n=0: score = R + 1
    assert p.scores() == {1: pytest.approx(-2.0)}
    assert p.select(3) == [1, 1, 1]  # fewer lineages than B: repeats, never fewer picks


def test_formula_hand_computed() -> None:
    p = tree()
    assert p.T == 1 and p.nodes[1].n == 1 and p.nodes[1].m == 5.0
    assert set(p.nodes) == {1, 2, 3}  # the failure is recorded but never selectable
    assert p.parents[4] == 1
    # ranks by R: 2 (5.0) -> 0, 3 (2.0) -> 1, 1 (0.0) -> 2; P = 3/6, 2/6, 1/6
    # scale over non-initial: 5 - 2 = 3; sqrt(1 + T) = sqrt(2)
    s2 = math.sqrt(2)
    want = {2: 5.0 + 3 * (3 / 6) * s2,  # unvisited: Q = R
            3: 2.0 + 3 * (2 / 6) * s2,
            1: 5.0 + 3 * (1 / 6) * s2 / 2}  # visited once: Q = m = 5, divided by 1 + n
    got = p.scores()
    assert got == {k: pytest.approx(v) for k, v in want.items()}
    p2 = tree()
    p2.c = 2.5
    assert p2.scores()[3] == pytest.approx(2.0 + 2.5 * 3 * (2 / 6) * s2)


def test_scale_edge_cases() -> None:
    p = Puct()
    p.add_initial(1, 0.0, "a")
    p.add_initial(2, 10.0, "b")
    # only initial states: scale 1.0; P = 2/3 for 2, 1/3 for 1
    assert p.scores() == {1: pytest.approx(1 / 3), 2: pytest.approx(10 + 2 / 3)}
    p.observe_group(1, [(3, 4.0, True, "c")])  # one non-initial state: scale = 1e-6
    sc = p.scores()
    # ranks: 2 (10), 3 (4), 1 (0); N=3, sum 6; T=1
    assert sc[3] == pytest.approx(4.0 + 1e-6 * (2 / 6) * math.sqrt(2), abs=1e-12)
    assert sc[2] == pytest.approx(10.0 + 1e-6 * (3 / 6) * math.sqrt(2), abs=1e-12)
    assert sc[1] == pytest.approx(4.0 + 1e-6 * (1 / 6) * math.sqrt(2) / 2, abs=1e-12)


def test_unvisited_q_is_reward_and_sqrt_t_grows() -> None:
    p = tree()
    before = p.scores()[3]
    p.observe_group(2, [(5, -1e9, False, "")])  # T: 1 -> 2; only 2's and 1's statistics move
    assert p.T == 2
    # 3 is unvisited (Q = R = 2.0); only sqrt(1+T) changed for it
    assert p.scores()[3] - 2.0 == pytest.approx((before - 2.0) * math.sqrt(3) / math.sqrt(2))
    # all children of 2 failed: a failure never lowers m, so m(2) stays unset and Q(2) = R(2)
    assert p.nodes[2].m is None and p.nodes[2].n == 1
    assert p.scores()[2] > 5.0


def test_an_all_failed_group_leaves_m_unchanged() -> None:
    p = Puct()
    p.add_initial(1, -0.49, "init")
    p.observe_group(1, [(2, -2.0, False, ""), (3, -2.0, False, "")])
    assert p.nodes[1].m is None and p.nodes[1].n == 1  # visited, but Q is still R
    assert p.scores()[1] > -0.49
    p.observe_group(1, [(4, -0.45, True, "a"), (5, -2.0, False, "")])
    p.observe_group(1, [(6, -2.0, False, "")] * 1)
    assert p.nodes[1].m == -0.45  # only the valid child counted, and later failures keep it


def test_visits_and_best_child_propagate() -> None:
    p = tree()
    p.observe_group(2, [(5, 6.0, True, "k5"), (6, 7.0, True, "k6")])
    p.observe_group(6, [(7, 6.5, True, "k7")])
    assert p.T == 3
    # n counts groups below: 1 saw 3 groups, 2 saw 2, 6 saw 1; untouched branches stay at 0
    assert (p.nodes[1].n, p.nodes[2].n, p.nodes[6].n, p.nodes[3].n, p.nodes[5].n) == (3, 2, 1, 0, 0)
    # m is the best direct child of the group's parent only, and never decreases
    assert (p.nodes[1].m, p.nodes[2].m, p.nodes[6].m) == (5.0, 7.0, 6.5)
    p.observe_group(6, [(8, 1.0, True, "k8")])
    assert p.nodes[6].m == 6.5 and p.nodes[6].n == 2
    assert p.ancestors(7) == [6, 2, 1]


def test_top_two_valid_children_and_dedup() -> None:
    p = Puct()
    p.add_initial(1, 0.0, "root")
    p.observe_group(1, [(2, 1.0, True, "a"), (3, 4.0, True, "b"), (4, 3.0, True, "c"),
                        (5, 9.0, False, ""), (6, 2.0, True, "d")])
    assert set(p.nodes) == {1, 3, 4}  # top 2 valid by reward; the failure never enters
    assert p.nodes[1].m == 4.0  # m counts valid children only
    # duplicates of a selectable state and within the group are skipped; the next best enters
    p.observe_group(3, [(7, 8.0, True, "b"), (8, 7.0, True, "e"), (9, 7.0, True, "e"),
                        (10, 5.0, True, "f"), (11, 6.0, True, "root")])
    assert set(p.nodes) == {1, 3, 4, 8, 10}
    assert p.nodes[3].m == 8.0


def test_top_two_children_per_parent_over_the_whole_run() -> None:
    p = Puct()
    p.add_initial(1, 0.0, "root")
    p.observe_group(1, [(2, 1.0, True, "a"), (3, 2.0, True, "b")])
    assert set(p.nodes) == {1, 2, 3}
    p.observe_group(1, [(4, 0.5, True, "c")])  # worse than both kept children: stays out
    assert set(p.nodes) == {1, 2, 3}
    p.observe_group(1, [(5, 3.0, True, "d"), (6, 1.5, True, "e")])  # displace 2, then nothing
    assert set(p.nodes) == {1, 3, 5}
    p.observe_group(3, [(7, 9.0, True, "f")])  # another parent's children are counted apart
    assert set(p.nodes) == {1, 3, 5, 7}
    assert sum(nd.parent_id == 1 for nd in p.nodes.values()) == 2


def test_cap_keeps_initial_states_and_best() -> None:
    p = Puct(cap=4)
    p.add_initial(1, -100.0, "i1")
    p.add_initial(2, -200.0, "i2")
    p.observe_group(1, [(3, 1.0, True, "a"), (4, 5.0, True, "b")])
    p.observe_group(4, [(5, 3.0, True, "c"), (6, 0.5, True, "d")])
    assert set(p.nodes) == {1, 2, 4, 5}  # initial states kept, then the best two by reward
    assert p.parents[3] == 1 and p.parents[6] == 4  # evicted ones are still in the tree
    small = Puct(cap=1)
    small.add_initial(1, 0.0, "x")
    small.add_initial(2, 1.0, "y")
    small.observe_group(2, [(3, 9.0, True, "z")])
    assert set(small.nodes) == {1, 2}  # the cap never drops an initial state


def test_lineage_blocking_ancestors_and_siblings() -> None:
    p = Puct(c=0.0)  # scores are Q alone, so the order is easy to read
    p.add_initial(1, 0.0, "r1")
    p.add_initial(2, -10.0, "r2")
    p.observe_group(1, [(3, 10.0, True, "a"), (4, 9.0, True, "b")])
    # Q: 1 -> m = 10, 3 -> 10, 4 -> 9, 2 -> -10; tie 1 vs 3 broken by R, so 3 first
    assert p.select(1) == [3]
    assert p.select(2) == [3, 4]  # 4 is 3's sibling, not in its lineage
    assert p.select(3) == [3, 4, 2]  # 1 is 3's ancestor: blocked
    # more picks than lineages: unpicked states come next, then repeats in score order
    assert p.select(4) == [3, 4, 2, 1]
    assert p.select(6) == [3, 4, 2, 1, 3, 4]


def test_lineage_blocking_descendants() -> None:
    p = Puct(c=0.0)
    p.add_initial(1, 0.0, "r1")
    p.add_initial(2, -10.0, "r2")
    # the best child (20) duplicates r2's artefact: m(1) = 20 but it is not selectable
    p.observe_group(1, [(3, 20.0, True, "r2"), (4, 9.0, True, "b"), (5, 8.0, True, "c")])
    p.observe_group(4, [(6, 15.0, True, "d")])
    assert set(p.nodes) == {1, 2, 4, 5, 6}
    assert p.select(1) == [1]
    # picking 1 blocks its children 4, 5 and grandchild 6 (all descendants)
    assert p.select(2) == [1, 2]


def test_distinct_lineages_with_default_c() -> None:
    p = Puct()
    for i in range(3):
        p.add_initial(i + 1, float(i), f"r{i}")
    nxt = 10
    for step in range(4):
        for parent in p.select(3):
            kids = [(nxt + j, float((nxt * 7 + j * 13) % 17), True, f"k{nxt + j}")
                    for j in range(3)]
            nxt += 3
            p.observe_group(parent, kids)
        picks = p.select(3)
        assert len(set(picks)) == 3, step
        for a in picks:  # no pick is another's ancestor
            assert not set(picks) & set(p.ancestors(a))


def test_greedy_and_fixed() -> None:
    p = Puct(strategy="greedy", epsilon=0.0)
    p.add_initial(1, 0.0, "a")
    p.observe_group(1, [(2, 5.0, True, "b"), (3, 4.0, True, "c")])
    assert p.select(4) == [2, 2, 2, 2]
    r = Puct(strategy="greedy", epsilon=1.0, seed=7)
    r.add_initial(1, 0.0, "a")
    r.observe_group(1, [(2, 5.0, True, "b"), (3, 4.0, True, "c")])
    picks = r.select(30)
    assert set(picks) == {1, 2, 3}  # uniform over the selectable set
    assert r.select(30) == picks  # seeded by (seed, T): the same state picks the same
    f = Puct(strategy="fixed")
    f.add_initial(1, 0.0, "a")
    f.add_initial(2, 1.0, "b")
    f.observe_group(2, [(3, 50.0, True, "c")])
    assert f.select(3) == [2, 1, 2]  # T = 1: round robin over the initial states only


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="strategy"):
        Puct(strategy="best")
    p = Puct()
    with pytest.raises(RuntimeError, match="initial"):
        p.select(1)
    p.add_initial(1, 0.0, "a")
    with pytest.raises(ValueError, match="B >= 1"):
        p.select(0)
    with pytest.raises(KeyError, match="never recorded"):
        p.observe_group(99, [(2, 1.0, True, "b")])
    with pytest.raises(ValueError, match="NaN"):
        p.observe_group(1, [(2, float("nan"), True, "b")])
