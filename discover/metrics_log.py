"""Per-step metrics: the line a step writes into metrics.jsonl, and the optional copies of it
in TensorBoard or Weights & Biases.

Both are optional extras (`pip install 'discover[tensorboard]'`, `'discover[wandb]'`), chosen
with `discover run --log tensorboard` / `--log wandb` or the config key run.log. A sink whose
package is missing fails the run at start-up, before anything is created.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from discover.config import LOG_SINKS, ConfigError

if TYPE_CHECKING:
    from discover.archive import Candidate
    from discover.backends.base import Policy, Sample

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}  # sink -> the module it needs


def sinks(spec: str) -> list[str]:
    """'tensorboard,wandb' -> ['tensorboard', 'wandb']; refuses unknown names."""
    names = [x.strip() for x in spec.split(",") if x.strip()]
    for name in names:
        if name not in LOG_SINKS:
            raise ConfigError(f"unknown metrics sink {name!r}; known: {', '.join(LOG_SINKS)}")
    return names


def check(spec: str) -> None:
    """Raise ConfigError, naming the pip command, for a sink whose package is not installed."""
    for name in sinks(spec):
        if importlib.util.find_spec(PACKAGES[name]) is None:
            raise ConfigError(f"--log {name} needs the {PACKAGES[name]} package, which is not "
                              f"installed: pip install 'discover[{name}]'")


def flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a step's metrics as {"seconds/generate": 1.2, ...}."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "/"))
        elif isinstance(value, (int, float)) and key not in ("step", "time"):
            out[name] = float(value)
    return out


class MetricsLog:
    """The sinks named in run.log; write() takes one step's metrics (as in metrics.jsonl)."""

    def __init__(self, spec: str, run_dir: str | Path, config: dict[str, Any]) -> None:
        check(spec)
        self.names = sinks(spec)
        self.tb = self.wandb = None
        if "tensorboard" in self.names:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
        if "wandb" in self.names:
            import wandb

            # WANDB_PROJECT, WANDB_MODE (e.g. offline) and the rest of wandb's own variables apply.
            self.wandb = wandb.init(project=os.environ.get("WANDB_PROJECT", "discover"),
                                    name=Path(run_dir).name, dir=str(run_dir), config=config)

    def write(self, step: int, metrics: dict) -> None:
        values = flatten(metrics)
        if metrics.get("total"):
            values["valid_rate"] = metrics.get("valid", 0) / metrics["total"]
        if self.tb is not None:
            for name, value in values.items():
                self.tb.add_scalar(name, value, step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def step_metrics(step: int, groups: list[list[Candidate]], samples: list[list[Sample]],
                 policy: Policy, learn: dict, seconds: dict) -> dict:
    """The step's line of metrics.jsonl (and of the archive's step table)."""
    children = [c for g in groups for c in g]
    valid = [c for c in children if c.ok]
    failures: dict[str, int] = {}
    for c in children:
        if c.failure:
            failures[c.failure] = failures.get(c.failure, 0) + 1
    metrics = {
        "step": step, "version": policy.version, "total": len(children), "valid": len(valid),
        "mean_reward": sum(c.reward for c in children) / max(1, len(children)),
        "best_step_reward": max((c.reward for c in valid), default=None),
        "tokens": sum(len(s.completion_ids) for g in samples for s in g),
        "failures": failures, "seconds": seconds,
        "samples_per_hour": 3600 * len(children) / max(1e-9, sum(seconds.values())),
        "learner": {k: v for k, v in learn.items() if isinstance(v, (int, float, bool))},
        "time": time.time(),
    }
    usage = policy.last_stats
    if "requests" in usage:  # an HTTP endpoint: its token usage (it returns no token ids)
        metrics["usage"] = {k: v for k, v in usage.items() if k != "seconds"}
        metrics["tokens"] = metrics["tokens"] or usage["completion_tokens"]
    return metrics
