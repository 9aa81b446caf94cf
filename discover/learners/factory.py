"""The learner the [learner] section names. Above base.py and the learners, which import base.py:
each learner is imported only here, and only the one a run uses."""

from __future__ import annotations

from discover.backends.base import Policy
from discover.config import Config
from discover.learners.base import Learner


def make_learner(cfg: Config, policy: Policy) -> Learner | None:
    """The learner the [learner] section names; None for method "none" (no learning)."""
    if cfg.learner.method == "none":
        return None
    lc, temperature = cfg.learner, cfg.policy.temperature  # (the sampler's, for the ratio)
    if cfg.learner_backend() == "trl":  # its own model copy, in a Ray actor on lc.gpus GPUs
        from discover.learners.trl import RemoteLearner
        from discover.model.store import resolve_model

        return RemoteLearner(policy, str(resolve_model(cfg.policy.model)), lc,
                             temperature=temperature, seed=cfg.run.seed, gpus=lc.gpus)
    from discover.learners.peft import PeftLearner

    if not cfg.run.overlap:  # the sampler's own model, in this thread
        return PeftLearner(policy, lc, temperature=temperature, seed=cfg.run.seed)
    # run.overlap: a model copy of the learner's own, in a worker thread; the sampler carries an
    # adapter of the same shape, loaded between steps (backends/hf.py, load_adapter).
    from discover.backends.factory import make_hf_policy
    from discover.learners.background import BackgroundLearner
    from discover.threads import CHOICE

    threads = lc.threads or CHOICE.cores
    learner = BackgroundLearner(
        lambda: PeftLearner(make_hf_policy(cfg, threads), lc, temperature=temperature,
                            seed=cfg.run.seed), threads)
    PeftLearner.wrap(policy, lc, seed=cfg.run.seed)
    return learner
