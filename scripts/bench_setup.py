"""What the bench scripts share: an environment's initial states as a search's first prompts show
them (initial artefacts -> verified -> Parent -> prompt)."""

from __future__ import annotations

from discover.environment import Environment, Parent
from discover.prompt import render


def initial_parents(env: Environment, count: int, seed: int = 0,
                    starter: bool = False) -> list[Parent]:
    """The verified initial constructions as parents; `starter`: showing the starter program, as
    a search's initial states do (else the bare construction)."""
    parents = []
    for art in env.initial_artifacts(count, seed):
        ev = env.verify(art)
        parents.append(Parent(code=env.starter_program() if starter else None,
                              artifact=ev.artifact, score=ev.score, parent_score=None))
    return parents


def initial_prompts(env: Environment, count: int, seed: int = 0,
                    starter: bool = False) -> list[str]:
    return [render(env, p) for p in initial_parents(env, count, seed, starter)]
