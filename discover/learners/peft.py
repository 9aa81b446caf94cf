"""The test-time RL learner: advantages per group, one LoRA policy-gradient step (docs/METHOD.md).

On CPU the sampler and the learner share ONE in-process model: the learner wraps the policy's
model with a PEFT LoRA adapter, so after a step the next `policy.sample` already uses the new
weights and no weight transfer is needed.

Loss, per completion with advantage A and completion tokens t:
    sum_t -A * exp(logp_theta(t) - logp_sampler(t))  [+ kl_coef * sum_t k3(t)]
averaged over the completions of the step. On-policy the ratio is 1 and the gradient is
-A * grad logp. k3 = exp(b - l) - (b - l) - 1 (b: base-model log-prob, l: current) is the usual
non-negative per-token estimate of KL(theta || base). Prompt tokens carry no loss.

A step whose advantages are all zero (and kl_coef == 0) has no gradient: it is skipped with no
optimiser step and no version bump, so a version always names one set of weights. Likewise a
completion with A = 0 runs no forward or backward pass when kl_coef == 0: its loss term is
exactly zero, and so is its gradient.

`learner.clock` holds the seconds of each part of the last step (scripts/profile_learner.py).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file

from discover.advantages import compute_advantages
from discover.backends.base import Sample
from discover.learners.base import Learner
from discover.learners.config import LearnerConfig, check_temperature
from discover.model import shared_prefix
from discover.model.cpu_flags import cpu_has_amx_bf16
from discover.model.logprobs import (
    group_log_softmax,
    group_logprobs,
    sequence_log_softmax,
    sequence_logprobs,
)

ADAPTER_FILE = "adapter_model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "learner.json"


class StepClock:
    """Wall seconds per named part of one learner step (flat: parts do not nest)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


class PeftLearner(Learner):
    """LoRA on the sampler's own in-process model (the CPU path)."""

    def __init__(self, policy, cfg: LearnerConfig, temperature: float = 1.0,
                 seed: int | None = None):
        """`temperature` is the sampler's (policy.temperature): its log-probs are of
        logits / T, so the ratio must use the same. `seed` fixes the adapter's random
        initialisation (LoRA's A matrices), so that two runs of one seed learn alike; None
        draws it from torch's global generator."""
        cfg.validate(learning=True)
        check_temperature(temperature)
        self.policy, self.cfg, self.temperature = policy, cfg, temperature
        model = self.wrap(policy, cfg, seed)  # the sampler now generates through the adapter
        if cfg.grad_checkpointing:
            enable_checkpointing(model.get_base_model())
        drop_input_grads(model.get_base_model())  # (PEFT adds one when it wraps the model)
        model.eval()
        self.model = model
        self.batched = cfg.batched and shared_prefix.install(model)
        if not cfg.prompt_grad and not self.batched:  # (the per-row pass has no prompt pass)
            warnings.warn("learner.prompt_grad = false needs the batched learner (learner.batched"
                          " and a model shared_prefix supports): taking the whole gradient",
                          stacklevel=2)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.lr = cfg.learning_rate(model.config)
        # Adam as in the reference: AdamW without weight decay, so a zero gradient moves nothing.
        self.optimizer = torch.optim.AdamW(self.params, lr=self.lr, betas=tuple(cfg.betas),
                                           weight_decay=0.0)
        self._before: list[torch.Tensor] = []  # the last backward's log-probs, chunk order
        self.clock = StepClock()
        # The movement probe's completions (learner.probe_rows; the first of the step's first
        # micro-batch): 8 -> 2 cut the probe 3.3x at 384 tokens (issue 34); 0: no probe.
        self.probe_rows = cfg.probe_rows
        # The learner's forward passes in bfloat16 where the CPU has AMX-BF16 (as the vLLM CPU
        # engine decides), else float32: without it bf16 was 1.6x slower (issue 34).
        self.bf16 = model.device.type == "cpu" and cpu_has_amx_bf16()

    @staticmethod
    def wrap(policy, cfg: LearnerConfig, seed: int | None = None) -> PeftModel:
        """The policy's model with this learner's LoRA adapter (B = 0: the same outputs), made
        once; `seed` fixes the adapter's random A matrices."""
        model = policy.model
        if not isinstance(model, PeftModel):
            with torch.random.fork_rng(devices=[]):
                if seed is not None:
                    torch.manual_seed(seed)
                model = get_peft_model(model, cfg.lora(model.config.num_hidden_layers))
            policy.model = model
        return model

    def step(self, groups: list[list[Sample]], rewards: list[list[float]],
             copies: list[list[bool]] | None = None) -> dict:
        """Advantages per group, then ONE optimiser step over all completions with tokens.

        `copies` marks the children whose program is their parent's (learner.copies)."""
        t0 = time.monotonic()
        self.clock = clock = StepClock()
        metrics = self.backward(groups, rewards, copies)
        if not metrics["skipped"]:
            clip = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else math.inf
            with clock.part("clip"):
                metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.params, clip))
            with clock.part("optimiser"):
                self.optimizer.step()
            self.policy.version += 1
            if self.probe_rows:
                with clock.part("movement probe"):
                    metrics.update(self.movement(self._work))
        with clock.part("zero grad"):
            self.optimizer.zero_grad(set_to_none=True)
        metrics.update(seconds=time.monotonic() - t0, version=self.policy.version, lr=self.lr)
        return metrics

    def movement(self, work: list[tuple[Sample, float]]) -> dict:
        """How far the step moved the model (`movement`), on the first `probe_rows` completions
        of the step's first micro-batch, with the log-probs its backward pass computed as before."""
        chunk = self._chunks(work)[0][:self.probe_rows]
        return movement(self.model, chunk, self._before[:len(chunk)], self._tables)

    def _tables(self, chunk: list[tuple[Sample, float]]) -> list[torch.Tensor]:
        t = self.temperature
        if self.batched:
            return group_log_softmax(self.model, chunk[0][0].prompt_ids,
                                     [s.completion_ids for s, _ in chunk], t)
        return [sequence_log_softmax(self.model, s.prompt_ids, s.completion_ids, t)
                for s, _ in chunk]

    def backward(self, groups: list[list[Sample]], rewards: list[list[float]],
                 copies: list[list[bool]] | None = None) -> dict:
        """Compute the step's loss and leave its gradient in the LoRA weights' .grad.

        Gradients are accumulated over micro-batches of `micro_batch` completions (batched: of
        one prompt, which runs once per micro-batch), each backward pass scaled by 1/N (N:
        completions with tokens) so the sum is the mean loss's.
        """
        with self.clock.part("advantages"):
            items, work, metrics = step_items(groups, rewards, self.cfg, copies)
            self.optimizer.zero_grad(set_to_none=True)
        self._work, self._before = work, []
        if not work:
            return metrics
        n = len(items)
        sums = {"loss": 0.0, "kl_base": 0.0, "ratio": 0.0, "ratio_n": 0}
        self.model.train()
        try:
            for chunk in self._chunks(work):
                self._chunk_backward(chunk, n, sums)
        finally:
            self.model.eval()
        metrics.update(loss=sums["loss"], skipped=False,
                       ratio=sums["ratio"] / max(1, sums["ratio_n"]), kl_base=sums["kl_base"] / n)
        return metrics

    def _chunk_backward(self, chunk: list[tuple[Sample, float]], n: int, sums: dict) -> None:
        """One micro-batch's forward passes and backward pass; adds its figures to `sums`."""
        part = self.clock.part
        with part("lora forward"), self._autocast():
            logps = self._logprobs(chunk)
        bases = [None] * len(chunk)
        if self.cfg.kl_coef > 0:
            with part("base forward"), self._autocast(), torch.no_grad(), \
                    self.model.disable_adapter():
                bases = self._logprobs(chunk)
        with part("loss"):
            terms = []
            self._before += [lp.detach() for lp in logps]
            for (s, a), logp, base in zip(chunk, logps, bases, strict=True):
                pg, kl_base, ratios = self._completion_loss(s, a, logp, base)
                terms.append((pg + self.cfg.kl_coef * kl_base) / n)
                sums["kl_base"] += kl_base.item()
                sums["ratio"] += ratios.sum().item()
                sums["ratio_n"] += ratios.numel()
            loss = torch.stack(terms).sum()
        with part("backward"):
            loss.backward()
        sums["loss"] += loss.item()

    def _autocast(self):
        """bfloat16 autocast where the CPU has AMX-BF16 (`bf16`), else nothing."""
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def _chunks(self, work: list[tuple[Sample, float]]) -> list[list[tuple[Sample, float]]]:
        """Micro-batches: `micro_batch` completions each; batched, only of one prompt."""
        m = self.cfg.micro_batch
        if not self.batched:
            return [work[i:i + m] for i in range(0, len(work), m)]
        by_prompt: dict[tuple[int, ...], list[tuple[Sample, float]]] = {}
        for s, a in work:
            by_prompt.setdefault(tuple(s.prompt_ids), []).append((s, a))
        return [rows[i:i + m] for rows in by_prompt.values() for i in range(0, len(rows), m)]

    def _logprobs(self, chunk: list[tuple[Sample, float]]) -> list[torch.Tensor]:
        t = self.temperature
        if self.batched:
            return group_logprobs(self.model, chunk[0][0].prompt_ids,
                                  [s.completion_ids for s, _ in chunk], t, self.cfg.prompt_grad)
        return [sequence_logprobs(self.model, s.prompt_ids, s.completion_ids, t) for s, _ in chunk]

    @staticmethod
    def _completion_loss(s: Sample, a: float, logp: torch.Tensor, base: torch.Tensor | None):
        """(summed PG loss, summed k3 KL to the base model, detached ratios) for one completion,
        from its log-probs under the current model (`logp`) and the base model (`base`)."""
        sampler = torch.tensor(s.logprobs, dtype=logp.dtype, device=logp.device)
        ratios = torch.exp(logp - sampler)
        pg = -a * ratios.sum()
        kl = torch.zeros((), dtype=logp.dtype, device=logp.device)
        if base is not None:
            d = base - logp
            kl = (torch.exp(d) - d - 1).sum()
        return pg, kl, ratios.detach()

    def save(self, path: str | Path) -> None:
        """Adapter (PEFT format, loadable by vLLM), optimiser state and version into a folder."""
        save_state(path, self.model, self.optimizer, self.policy.version)

    def load(self, path: str | Path) -> None:
        """Restore the adapter weights, optimiser state and version saved by `save`."""
        self.policy.version = load_state(path, self.model, self.optimizer, self.cfg)


def movement(model: PeftModel, chunk: list[tuple[Sample, float]], before: list[torch.Tensor],
             tables) -> dict:
    """How far an update moved the model on its own samples, per completion token:
    `logp_change`, the mean |log-prob after - before| of the sampled tokens (`before`: one
    tensor per completion of `chunk`), and `policy_kl`, the mean KL(adapted || base) of the
    next-token distributions at the samples' positions (0 for the base model). `tables(chunk)`
    gives each completion's [tokens, vocabulary] log-softmax; it runs once with the adapter and
    once without, no gradient: about one forward pass per completion, not the whole step's."""
    n, change, kl = 0, 0.0, 0.0
    with torch.no_grad():
        after = tables(chunk)
        with model.disable_adapter():
            base = tables(chunk)
    for (s, _), b4, a, b in zip(chunk, before, after, base, strict=True):
        ids = torch.tensor(s.completion_ids, device=a.device)
        change += (a.gather(1, ids[:, None]).squeeze(1) - b4.to(a.device)).abs().sum().item()
        kl += (a.exp() * (a - b)).sum().item()
        n += len(s.completion_ids)
    return {"logp_change": change / max(1, n), "policy_kl": kl / max(1, n)}


def save_state(path: str | Path, model, optimizer: torch.optim.Optimizer, version: int) -> None:
    """A learner's state as a folder: PEFT adapter, optimiser state and version (any backend)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    torch.save(optimizer.state_dict(), path / OPTIMIZER_FILE)
    (path / STATE_FILE).write_text(json.dumps({"version": version}))


def load_state(path: str | Path, model, optimizer: torch.optim.Optimizer,
               cfg: LearnerConfig) -> int:
    """Restore what `save_state` wrote into `model` and `optimizer`; returns the version."""
    path = Path(path)
    missing = [f for f in (ADAPTER_FILE, OPTIMIZER_FILE, STATE_FILE) if not (path / f).exists()]
    if missing:
        raise FileNotFoundError(f"{path} is not a saved learner: missing {missing}")
    saved = json.loads((path / "adapter_config.json").read_text())
    targets, layers = lora_modules(model), model.peft_config["default"].layers_to_transform
    if saved.get("r") != cfg.lora_rank or set(saved.get("target_modules") or []) != targets \
            or saved.get("layers_to_transform") != layers:
        raise ValueError(
            f"adapter in {path} has rank {saved.get('r')} on "
            f"{sorted(saved.get('target_modules') or [])} of layers "
            f"{saved.get('layers_to_transform') or 'all'}; this learner uses rank "
            f"{cfg.lora_rank} on {sorted(targets)} of layers {layers or 'all'} "
            f"(learner.lora_rank, learner.lora_targets, learner.layers)")
    result = set_peft_model_state_dict(model, load_file(path / ADAPTER_FILE))
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"adapter in {path} has unexpected weights: {result.unexpected_keys}")
    optimizer.load_state_dict(torch.load(path / OPTIMIZER_FILE, weights_only=True))
    return int(json.loads((path / STATE_FILE).read_text())["version"])


def lora_modules(model) -> set[str]:
    """The module names a PEFT model's adapter sits on (PEFT resolves "all-linear" to them)."""
    return set(model.peft_config["default"].target_modules)


def step_items(groups: list[list[Sample]], rewards: list[list[float]], cfg: LearnerConfig,
               copies: list[list[bool]] | None = None
               ) -> tuple[list[tuple[Sample, float]], list[tuple[Sample, float]], dict]:
    """Advantages per group: (all completions with tokens, those that carry a loss, metrics).

    Shared by every learner backend, so they all train on the same advantages. Completions
    with A = 0 add nothing to the loss or its gradient unless a KL term applies. `copies`
    (one flag per sample) marks children that are their parent's program: metrics count them
    and the share of the positive advantage they get; with cfg.copies == "zero" their A is 0.
    With cfg.negatives == "zero" every negative A is 0: nothing is pushed down.
    """
    if len(groups) != len(rewards) or any(
            len(g) != len(r) for g, r in zip(groups, rewards, strict=False)):
        raise ValueError("the learner needs one reward per sample: got group sizes "
                         f"{[len(g) for g in groups]} and {[len(r) for r in rewards]}")
    advs, betas, kls = [], [], []
    for r in rewards:
        a, m = compute_advantages(r, cfg.method, cfg.beta)
        advs.append(a)
        betas.append(m["beta"])
        kls.append(m["kl"])
    flags = copies or [[False] * len(g) for g in groups]
    if [len(f) for f in flags] != [len(g) for g in groups]:
        raise ValueError("the learner needs one copy flag per sample")
    flat = [(a, f) for ga, gf in zip(advs, flags, strict=True) for a, f in zip(ga, gf, strict=True)]
    positive = sum(a for a, _ in flat if a > 0)
    copy_share = sum(a for a, f in flat if a > 0 and f) / positive if positive else 0.0
    if cfg.copies == "zero":
        advs = [[0.0 if f else a for a, f in zip(ga, gf, strict=True)]
                for ga, gf in zip(advs, flags, strict=True)]
    if cfg.negatives == "zero":
        advs = [[max(a, 0.0) for a in ga] for ga in advs]
    items = [(s, a) for g, ga in zip(groups, advs, strict=True)
             for s, a in zip(g, ga, strict=True) if s.completion_ids]
    for s, _ in items:
        _check_sample(s)
    all_a = [a for ga in advs for a in ga]
    metrics = {
        "adv_abs": sum(abs(a) for a in all_a) / max(1, len(all_a)),
        "beta": sum(betas) / max(1, len(betas)),
        "kl": sum(kls) / max(1, len(kls)),
        "completions": len(items),
        "copies": sum(f for _, f in flat), "copy_adv_share": copy_share,
        "tokens": sum(len(s.completion_ids) for s, _ in items),
        "loss": 0.0, "grad_norm": 0.0, "skipped": True,
    }
    work = [(s, a) for s, a in items if a != 0.0 or cfg.kl_coef > 0]
    return items, work, metrics


def _check_sample(s: Sample) -> None:
    if not s.prompt_ids:
        raise ValueError("a sample with completion tokens needs its prompt_ids to be scored")
    if len(s.logprobs) != len(s.completion_ids):
        raise ValueError(f"sample has {len(s.completion_ids)} completion tokens but "
                         f"{len(s.logprobs)} sampling log-probs; the backend must keep one each")


def enable_checkpointing(model) -> None:
    """Recompute activations in the backward pass (docs/machines.md: 9.2 -> 6.1 GB, 8 x 400 tokens).

    Non-reentrant checkpointing lets gradients reach the LoRA weights even though the frozen
    embeddings' output does not require grad. Checkpointing is active in train mode only.
    """
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    drop_input_grads(model)


def drop_input_grads(model) -> None:
    """Remove the hooks (transformers' and PEFT's) that make the embeddings' output require grad.

    Reentrant checkpointing needs them; ours does not, and with them the backward pass runs down
    to the embeddings even where the adapter sits on the top layers only (learner.layers):
    without them it stops at the lowest adapted layer. The LoRA gradient is the same, bit for
    bit (issue 34, measured)."""
    emb = model.get_input_embeddings()
    for key, hook in list(emb._forward_hooks.items()):
        if getattr(hook, "__name__", "").startswith("make_inputs_require_grad"):
            del emb._forward_hooks[key]
