"""One config object: dataclasses, loaded from TOML, overridden by `--set section.key=value`.

The resolved config is saved as config.toml in the run directory and checked on resume.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from discover.learners.config import LearnerConfig


class ConfigError(ValueError):
    pass


LOG_SINKS = ("tensorboard", "wandb")  # run.log: metrics sinks beside metrics.jsonl


@dataclass
class RunSection:
    env: str = "erdos"
    steps: int = 50
    groups: int = 2  # B: parents per step (the reference uses 64 on GPUs; 2 fits a laptop CPU)
    group_size: int = 8  # G: completions per parent (reference 8); on 2 CPU cores 2 x 8 rows
    # give 3.8x the samples/h of 2 x 4, and 4 x 8 little more for twice the step (benchmarks.md)
    seed: int = 0
    budget_s: float = 0.0  # wall-clock budget for the whole run; 0 means none
    run_dir: str = ""  # default runs/<env>-<timestamp>
    init_file: str = ""  # a known construction to start from
    init_from: str = ""  # another run's directory: start from its initial states, as stored
    initial_states: int = 4
    selection: str = "puct"  # puct | greedy | fixed
    edit: str = "block"  # block: answer with the parent's editable block, where it marks one;
    # whole: answer with a whole program
    puct_c: float = 1.0
    log: str = ""  # extra metrics sinks beside metrics.jsonl: "tensorboard", "wandb" or both
    stream_scoring: bool = True  # each program goes to the scorers as soon as it is sampled
    # The learner's update of step t runs while step t+1 samples and scores with the adapter
    # one version behind (docs/METHOD.md, "Overlap"); off: every step samples with the latest.
    overlap: bool = False


@dataclass
class PolicySection:
    backend: str = "hf"  # hf (transformers) | openai (HTTP, sampling only) | vllm (GPU) |
    # null (no model: every child re-runs its parent's program; the ablation's floor)
    model: str = "smollm2"  # the embedded SmolLM2-135M-Instruct
    base_url: str = ""
    prefill: bool = True  # open the assistant's turn with the code block (prompt tokens)
    max_new_tokens: int = 384
    temperature: float = 0.4  # measured: the embedded model copies and edits best at 0.3-0.5
    batch_size: int = 32  # rows decoded together (hf); a step's B x G rows in as few batches
    shared_prefill: bool = True  # hf: each prompt prefilled once for its G rows
    onednn: bool = True  # hf on CPU: oneDNN's GEMM when sampling (2-4x MKL's on AMD EPYC)
    threads: int = 0  # torch threads; 0 means all cores
    # vllm backend (docs/gpu.md): generator actors on Ray, each placed on generator_gpus GPUs.
    generators: int = 1
    generator_gpus: float = 1.0  # 0.5 shares one GPU with a learner on learner.gpus = 0.5
    gpu_memory_utilization: float = 0.85  # of a whole GPU, per generator
    max_model_len: int = 0  # 0: the model's own
    # openai backend: the NAME of the environment variable holding the API key (the key itself
    # is never in the config); a hard limit on each request.
    api_key_env: str = "OPENAI_API_KEY"
    request_timeout_s: float = 300.0


@dataclass
class RaySection:
    address: str = ""  # empty: start a local Ray; otherwise join this cluster
    scorer_slots: int = 0  # CPU slots for scoring; 0 means all CPUs Ray sees
    # Seconds a step waits with no evaluation finishing before it gives its scorers up for lost
    # and stops the run for a resume; 0: max(600, 4 x the environment's time budget).
    scorer_wait_s: float = 0


@dataclass
class Config:
    run: RunSection = field(default_factory=RunSection)
    policy: PolicySection = field(default_factory=PolicySection)
    learner: LearnerConfig = field(default_factory=LearnerConfig)  # (discover/learners/config.py)
    ray: RaySection = field(default_factory=RaySection)
    env: dict[str, Any] = field(default_factory=dict)  # passed to the environment's constructor

    def validate(self) -> None:
        r = self.run
        at_least = {("run", "steps"): 1, ("run", "groups"): 1, ("run", "group_size"): 1,
                    ("run", "initial_states"): 1, ("run", "budget_s"): 0, ("run", "puct_c"): 0,
                    ("policy", "max_new_tokens"): 1, ("policy", "batch_size"): 1,
                    ("policy", "threads"): 0, ("ray", "scorer_slots"): 0,
                    ("ray", "scorer_wait_s"): 0}
        for (section, name), low in at_least.items():
            value = getattr(getattr(self, section), name)
            if not value >= low:  # (also refuses NaN)
                raise ConfigError(f"{section}.{name} must be at least {low}, got {value}")
        try:
            self.learner.validate()  # the section's own checks
        except ValueError as e:
            raise ConfigError(str(e)) from None
        for section, name in (("policy", "temperature"), ("policy", "request_timeout_s")):
            value = getattr(getattr(self, section), name)
            if not value > 0:
                raise ConfigError(f"{section}.{name} must be positive, got {value}")
        if r.selection not in ("puct", "greedy", "fixed"):
            raise ConfigError(f"run.selection must be puct, greedy or fixed, got {r.selection!r}")
        if r.edit not in ("block", "whole"):
            raise ConfigError(f"run.edit must be block or whole, got {r.edit!r}")
        sinks = [x.strip() for x in r.log.split(",") if x.strip()]
        if any(x not in LOG_SINKS for x in sinks):
            raise ConfigError(f"run.log must name sinks among {', '.join(LOG_SINKS)} "
                              f"(comma-separated), got {r.log!r}")
        if self.policy.backend not in ("hf", "openai", "vllm", "null"):
            raise ConfigError(
                f"policy.backend must be hf, openai, vllm or null, got {self.policy.backend!r}")
        if self.policy.backend == "openai" and not self.policy.base_url:
            raise ConfigError(
                "policy.backend = 'openai' needs policy.base_url (e.g. http://host:8000/v1)")
        if self.learner.method != "none" and self.policy.backend in ("openai", "null"):
            raise ConfigError(f"the {self.policy.backend} backend has no weights to train; use "
                              "--learner none with it")
        p, lc = self.policy, self.learner
        if p.backend == "vllm":
            if p.generators < 1 or not p.generator_gpus > 0:
                raise ConfigError("the vllm backend needs policy.generators >= 1 and "
                                  f"policy.generator_gpus > 0; got {p.generators} and "
                                  f"{p.generator_gpus}")
            if not 0 < p.gpu_memory_utilization <= 1 or p.max_model_len < 0:
                raise ConfigError("policy.gpu_memory_utilization must be in (0, 1] and "
                                  "policy.max_model_len >= 0")
            if lc.method != "none" and lc.backend == "peft":
                raise ConfigError("learner.backend = 'peft' trains the in-process transformers "
                                  "model; with policy.backend = 'vllm' use 'trl' (or 'auto')")
            if lc.method != "none" and lc.lora_rank > 512:
                raise ConfigError(f"vLLM serves LoRA ranks up to 512, got {lc.lora_rank}")
        elif lc.method != "none" and lc.backend == "trl":
            raise ConfigError("learner.backend = 'trl' hands its adapters to vLLM generators; "
                              "use it with policy.backend = 'vllm' (or learner.backend = 'peft')")

    def learner_backend(self) -> str:
        """The learner that runs: trl beside vLLM generators, peft otherwise ('auto')."""
        if self.learner.backend != "auto":
            return self.learner.backend
        return "trl" if self.policy.backend == "vllm" else "peft"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(section: str, key: str, value: Any, current: Any) -> Any:
    """Convert a value (from TOML or a --set string) to the type of the default."""
    if isinstance(current, list) and isinstance(value, str) and not value.lstrip().startswith("["):
        value = [x.strip() for x in value.split(",") if x.strip()]  # --set k=a,b
    if isinstance(value, str) and not isinstance(current, str):
        try:
            value = json.loads(value.lower() if value.lower() in ("true", "false") else value)
        except ValueError as e:
            raise ConfigError(
                f"{section}.{key}: cannot read {value!r} as {type(current).__name__}") from e
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{section}.{key} must be true or false, got {value!r}")
        return value
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(current):
        raise ConfigError(f"{section}.{key} must be {type(current).__name__}, got {value!r}")
    if isinstance(current, list) and current and isinstance(current[0], (int, float)):
        # a list of numbers (learner.betas): each item to the type of the default's first
        return [_coerce(section, key, x, current[0]) for x in value]
    return value


def apply(cfg: Config, values: dict[str, dict[str, Any]]) -> Config:
    """Merge {section: {key: value}} into cfg, refusing unknown sections and keys."""
    for section, items in values.items():
        if section == "env":
            if not isinstance(items, dict):
                raise ConfigError("[env] must be a table of environment options")
            cfg.env.update(items)
            continue
        target = getattr(cfg, section, None)
        if target is None or not dataclasses.is_dataclass(target):
            known = ", ".join(f.name for f in dataclasses.fields(cfg))
            raise ConfigError(f"unknown config section [{section}]; known sections: {known}")
        if not isinstance(items, dict):
            raise ConfigError(f"[{section}] must be a table")
        for key, value in items.items():
            if not hasattr(target, key):
                known = ", ".join(f.name for f in dataclasses.fields(target))
                raise ConfigError(f"unknown config key {section}.{key}; known keys: {known}")
            setattr(target, key, _coerce(section, key, value, getattr(target, key)))
    return cfg


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """['learner.lr=1e-4', 'env.time_budget_s=5'] -> {'learner': {'lr': '1e-4'}, ...}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        if section == "env":  # environment options are free-form: read numbers and booleans
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out.setdefault(section, {})[name] = value
    return out


def load_toml(path: str | Path) -> dict:
    try:
        return tomllib.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"malformed TOML in {path}: {e}") from e


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ConfigError(f"cannot write {v!r} to TOML")


def dumps(cfg: Config) -> str:
    lines = []
    for section, items in cfg.to_dict().items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in items.items()]
        lines.append("")
    return "\n".join(lines)


def resolve(layers: list[dict[str, dict[str, Any]]],
            env_defaults: Callable[[str], dict[str, dict[str, Any]]] | None = None) -> Config:
    """The config of a run from layers of {section: {key: value}}, lowest first, over the
    defaults; the CLI's: saved run config (on --resume) <- --config FILE <- flags <- --set.
    `env_defaults(env name)` (registry.recommended) gives the layer right above the defaults:
    the settings the run's environment (run.env as the layers leave it) recommends. On resume
    the saved config already holds the values they resolved to.

    Then the rule that depends on what the layers gave: learning is the default only where
    there are weights to train, so the openai and null backends run with no learner unless a
    layer names one (and validate refuses one that does)."""
    if env_defaults is not None:
        env = Config().run.env
        for layer in layers:
            run = layer.get("run")
            env = run.get("env", env) if isinstance(run, dict) else env  # (apply names a bad one)
        layers = [env_defaults(env), *layers]
    cfg = Config()
    for layer in layers:
        apply(cfg, layer)
    if cfg.policy.backend in ("openai", "null") and not any(
            "method" in layer.get("learner", {}) for layer in layers):
        cfg.learner.method = "none"
    cfg.validate()
    return cfg


def from_dict(values: dict) -> Config:
    cfg = apply(Config(), values)
    cfg.validate()
    return cfg


# What must match between a saved run and a resumed one; the rest (steps, budget) may change.
RESUME_FIXED = [("run", "env"), ("run", "groups"), ("run", "group_size"), ("run", "seed"),
                ("run", "selection"), ("policy", "model"), ("learner", "method"),
                ("learner", "lora_rank"), ("learner", "lora_targets"), ("learner", "layers"),
                ("env", None)]


def check_resume(saved: Config, new: Config) -> None:
    for section, key in RESUME_FIXED:
        a = getattr(saved, section) if key is None else getattr(getattr(saved, section), key)
        b = getattr(new, section) if key is None else getattr(getattr(new, section), key)
        if a != b:
            name = section if key is None else f"{section}.{key}"
            raise ConfigError(f"cannot resume: {name} was {a!r} in the saved run, now {b!r}")
