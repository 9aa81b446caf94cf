"""The backend the [policy] section names. Above base.py and the providers, which import base.py:
the providers are imported only here, and only the one a run uses (each pulls in its own stack)."""

from __future__ import annotations

from discover.backends.base import Policy
from discover.config import Config


def make_policy(cfg: Config) -> Policy:
    """The backend the [policy] section names (FunSearch's funsearch.py wiring is the model)."""
    p = cfg.policy
    if p.backend == "openai":
        from discover.backends.openai import OpenAIPolicy

        return OpenAIPolicy(base_url=p.base_url, model=p.model, api_key_env=p.api_key_env,
                            timeout_s=p.request_timeout_s)
    if p.backend == "vllm":  # generator actors on Ray GPUs (docs/gpu.md)
        import ray

        from discover.backends.vllm import VLLMPolicy, check_gpus, require_vllm
        from discover.model.store import resolve_model

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
        from discover.backends.null import NullPolicy

        return NullPolicy()
    return make_hf_policy(cfg)


def make_hf_policy(cfg: Config, threads: int | None = None):
    """The transformers backend as the [policy] section sets it up (a learner's own copy of the
    sampler's model is made the same way, so that their log-probs agree)."""
    from discover.backends.hf import HFPolicy

    p = cfg.policy
    return HFPolicy(model=p.model, threads=threads or p.threads or None,
                    batch_size=p.batch_size, shared_prefill=p.shared_prefill, onednn=p.onednn)
