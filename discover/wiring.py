"""The run's parts, each made from its config section (FunSearch's funsearch.py is the model):
the sampling backend, the learner, and the hand-off of a new adapter to the samplers."""

from __future__ import annotations

from typing import Protocol

from discover.config import Config
from discover.policy import Policy, Sample
from discover.rundir import RunDir


class Learner(Protocol):
    """What the loop calls on a learner (discover.learner.Learner on CPU, learner_trl's
    RemoteLearner beside vLLM generators)."""

    def step(self, groups: list[list[Sample]], rewards: list[list[float]],
             copies: list[list[bool]] | None = None) -> dict: ...

    def save(self, path) -> None: ...

    def load(self, path) -> None: ...


def make_policy(cfg: Config) -> Policy:
    p = cfg.policy
    if p.backend == "openai":
        from discover.policy_openai import OpenAIPolicy

        return OpenAIPolicy(base_url=p.base_url, model=p.model, api_key_env=p.api_key_env,
                            timeout_s=p.request_timeout_s)
    if p.backend == "vllm":  # generator actors on Ray GPUs (docs/gpu.md)
        import ray

        from discover.model_store import resolve_model
        from discover.policy_vllm import VLLMPolicy, check_gpus, require_vllm

        require_vllm()
        learning = cfg.learner.method != "none"
        learner_gpus = cfg.learner.gpus if learning and cfg.learner_backend() == "trl" else 0.0
        cluster_gpus = ray.cluster_resources().get("GPU", 0.0)
        gpus = p.generator_gpus if cluster_gpus > 0 else 0.0  # no GPUs: vLLM's CPU build
        check_gpus(p.generators * gpus + learner_gpus, cluster_gpus)
        return VLLMPolicy(str(resolve_model(p.model)), generators=p.generators,
                          gpus=gpus, enable_lora=learning,
                          lora_rank=cfg.learner.lora_rank,
                          gpu_memory_utilization=p.gpu_memory_utilization,
                          max_model_len=p.max_model_len, seed=cfg.run.seed)
    if p.backend == "null":  # no model: children re-run their parent's program (ablation)
        from discover.policy_null import NullPolicy

        return NullPolicy()
    from discover.policy_hf import HFPolicy

    return HFPolicy(model=p.model, threads=p.threads or None, batch_size=p.batch_size,
                    shared_prefill=p.shared_prefill, onednn=p.onednn)


def make_learner(cfg: Config, policy: Policy) -> Learner | None:
    if cfg.learner.method == "none":
        return None
    from discover.learner import Learner as PeftLearner
    from discover.learner import LearnerConfig

    lc = cfg.learner
    learner_cfg = LearnerConfig.of(lc, temperature=cfg.policy.temperature)
    if cfg.learner_backend() == "trl":  # its own model copy, in a Ray actor on lc.gpus GPUs
        from discover.learner_trl import RemoteLearner
        from discover.model_store import resolve_model

        return RemoteLearner(policy, str(resolve_model(cfg.policy.model)), learner_cfg,
                             temperature=cfg.policy.temperature, seed=cfg.run.seed, gpus=lc.gpus)
    return PeftLearner(policy, learner_cfg, seed=cfg.run.seed)


def publish_adapter(policy: Policy, rd: RunDir) -> None:
    """Samplers with their own model copy (vLLM) load the saved adapter of the current version.

    On CPU the sampler and learner share one model, so HFPolicy has nothing to load.
    """
    load = getattr(policy, "load_adapter", None)
    if load is not None and policy.version > 0:
        load(rd.adapter(policy.version), policy.version)
