"""PUCT selection over the archive (docs/METHOD.md, "PUCT selection over the archive").

Pure and in memory: the archive persists `nodes` and `T` and rebuilds a Puct on resume.

    Q(s)     = m(s) if n(s) > 0 else R(s)          (the best reachable value, not the mean)
    P(s)     = (N - rank(s)) / sum_t (N - rank(t))  (rank 0 = best R; N = selectable states)
    scale    = max R - min R over non-initial states (>= 1e-6; 1.0 when there are none)
    score(s) = Q(s) + c * scale * P(s) * sqrt(1 + T) / (1 + n(s))
"""

from __future__ import annotations

import math
import numbers
import random
from dataclasses import dataclass, replace

STRATEGIES = ("puct", "greedy", "fixed")
CHILDREN_KEPT = 2  # selectable children per parent, over the whole run


@dataclass
class Node:
    """A selectable state: its reward R, visit count n and best child reward m."""

    id: int
    reward: float
    parent_id: int | None
    initial: bool
    key: str  # dedup key ("" = none: never treated as a duplicate)
    n: int = 0
    m: float | None = None


class Puct:
    def __init__(self, c: float = 1.0, cap: int = 1000, strategy: str = "puct",
                 epsilon: float = 0.1, seed: int = 0) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown selection strategy {strategy!r}; expected one of "
                             f"{', '.join(STRATEGIES)}")
        if cap < 1:
            raise ValueError(f"the selectable-set cap must be >= 1, got {cap}")
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.c, self.cap, self.strategy, self.epsilon, self.seed = c, cap, strategy, epsilon, seed
        self.nodes: dict[int, Node] = {}  # the selectable set
        self.parents: dict[int, int | None] = {}  # parent of every recorded candidate
        self.T = 0  # groups completed so far

    # --- building the set ---------------------------------------------------------------
    def add_initial(self, id: int, reward: float, key: str) -> None:
        _check_reward(id, reward)
        self.parents[id] = None
        if key and any(nd.key == key for nd in self.nodes.values()):
            return  # an identical initial state is already selectable
        self.nodes[id] = Node(id=id, reward=reward, parent_id=None, initial=True, key=key)

    def observe_group(self, parent_id: int, children: list[tuple[int, float, bool, str]]) -> None:
        """Record a finished group of (child id, reward, ok, dedup key) from `parent_id`."""
        if parent_id not in self.parents:
            raise KeyError(f"parent {parent_id} was never recorded in the PUCT tree")
        for cid, reward, _, _ in children:  # check all before changing anything
            _check_reward(cid, reward)
            if cid in self.parents:
                raise ValueError(f"candidate {cid} was already recorded")
        for cid, _, _, _ in children:
            self.parents[cid] = parent_id
        valid = [r for _, r, ok, _ in children if ok]
        p = self.nodes.get(parent_id)
        if valid and p is not None:  # m(p) = max(m(p), best VALID child): failures never lower it
            p.m = max(valid) if p.m is None else max(p.m, max(valid))
        for a in [parent_id, *self.ancestors(parent_id)]:  # n += 1 for p and every ancestor
            if a in self.nodes:
                self.nodes[a].n += 1
        self.T += 1
        self._keep_top_children(parent_id, children)
        self._apply_cap()

    def _keep_top_children(self, parent_id: int,
                           children: list[tuple[int, float, bool, str]]) -> None:
        """The parent's 2 best valid, non-duplicate children over the whole run are selectable:
        a new child enters if it beats one of them, and the one it beats leaves the set."""
        keys = {nd.key for nd in self.nodes.values() if nd.key}
        kept = [nd for nd in self.nodes.values() if nd.parent_id == parent_id]
        for cid, reward, ok, key in sorted(children, key=lambda ch: (-ch[1], ch[0])):
            if not ok or (key and key in keys):
                continue
            kept.append(Node(id=cid, reward=reward, parent_id=parent_id, initial=False, key=key))
            keys.add(key)
        kept.sort(key=lambda nd: (-nd.reward, nd.id))  # equal rewards: the older one stays
        for nd in kept[:CHILDREN_KEPT]:
            self.nodes[nd.id] = nd
        for nd in kept[CHILDREN_KEPT:]:
            self.nodes.pop(nd.id, None)

    def _apply_cap(self) -> None:
        """Keep every initial state, then the best by reward (ties: older first)."""
        if len(self.nodes) <= self.cap:
            return
        rest = sorted((nd for nd in self.nodes.values() if not nd.initial),
                      key=lambda nd: (-nd.reward, nd.id))
        room = max(0, self.cap - (len(self.nodes) - len(rest)))
        for nd in rest[room:]:
            del self.nodes[nd.id]

    # --- the tree -----------------------------------------------------------------------
    def ancestors(self, id: int) -> list[int]:
        """Ids from `id`'s parent up to its root."""
        out, p = [], self.parents.get(id)
        while p is not None:
            out.append(p)
            p = self.parents.get(p)
        return out

    # --- scoring and selection ----------------------------------------------------------
    def scores(self) -> dict[int, float]:
        """The current PUCT score of every selectable state."""
        nodes = list(self.nodes.values())
        N = len(nodes)
        if N == 0:
            return {}
        ranked = sorted(nodes, key=lambda nd: (-nd.reward, nd.id))  # equal R: older ranks first
        total = N * (N + 1) / 2  # sum over ranks 0..N-1 of (N - rank)
        prior = {nd.id: (N - rank) / total for rank, nd in enumerate(ranked)}
        grown = [nd.reward for nd in nodes if not nd.initial]
        scale = max(max(grown) - min(grown), 1e-6) if grown else 1.0
        explore = self.c * scale * math.sqrt(1 + self.T)
        return {nd.id: _q(nd) + explore * prior[nd.id] / (1 + nd.n) for nd in nodes}

    def select(self, B: int) -> list[int]:
        """B parent ids for the next step (always exactly B; repeats only when unavoidable).

        puct: the highest scores (ties broken by higher R, then lower id). Picking s blocks s's
        whole lineage (ancestors and descendants) for the rest of the pass, so one pass yields
        distinct lineages. When a pass runs out before B picks, a new pass starts with nothing
        blocked, skipping states already picked in this call; once every state has been picked,
        states repeat in score order. So with fewer lineages than B, blocking is soft and the
        extra picks go to the next-best states of the same lineages.
        greedy: each pick is the best state by R, or with probability epsilon a uniformly random
        selectable state (the rng is seeded by (seed, T), so a resumed run picks the same).
        fixed: the initial states in turn (round robin, offset by T).
        """
        if B < 1:
            raise ValueError(f"select needs B >= 1, got {B}")
        if not self.nodes:
            raise RuntimeError("no selectable state: add the initial states first")
        if self.strategy == "fixed":
            inits = sorted(i for i, nd in self.nodes.items() if nd.initial)
            if not inits:
                raise RuntimeError("fixed selection needs an initial state; none is selectable")
            return [inits[(self.T + i) % len(inits)] for i in range(B)]
        if self.strategy == "greedy":
            rng = random.Random(self.seed * 1_000_003 + self.T)
            ids = sorted(self.nodes)
            best = min(ids, key=lambda i: (-self.nodes[i].reward, i))
            return [rng.choice(ids) if rng.random() < self.epsilon else best for _ in range(B)]
        return self._select_puct(B)

    def _select_puct(self, B: int) -> list[int]:
        sc = self.scores()
        order = sorted(sc, key=lambda i: (-sc[i], -self.nodes[i].reward, i))
        anc = {i: set(self.ancestors(i)) for i in order}
        picks: list[int] = []
        picked: set[int] = set()
        while len(picks) < B:
            fresh = len(picked) < len(order)  # unpicked states left: take those first
            blocked: set[int] = set()
            for s in order:
                if len(picks) == B:
                    break
                if s in blocked or (fresh and s in picked):
                    continue
                picks.append(s)
                picked.add(s)
                blocked |= {s} | anc[s] | {t for t in order if s in anc[t]}
        return picks


def _q(nd: Node) -> float:
    return nd.m if nd.n > 0 and nd.m is not None else nd.reward


def _check_reward(id: int, reward: float) -> None:
    if not isinstance(reward, numbers.Real) or math.isnan(reward):
        raise ValueError(f"candidate {id} has reward {reward!r}; rewards must be numbers, not NaN")


def copy_state(p: Puct) -> tuple[dict[int, Node], dict[int, int | None], int]:
    """A snapshot of p's mutable state, so a failed transaction can put it back."""
    return {i: replace(nd) for i, nd in p.nodes.items()}, dict(p.parents), p.T


def restore_state(p: Puct, state: tuple[dict[int, Node], dict[int, int | None], int]) -> None:
    p.nodes, p.parents, p.T = state
