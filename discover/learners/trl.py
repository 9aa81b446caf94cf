"""The learner on TRL, for GPUs: the same advantages and loss as discover/learners/peft.py.

TRL's `GRPOTrainer` carries the model (loading, PEFT LoRA wrapping, the fused LM head that
scores completion tokens without materialising the logits, autocast, device placement) and its
own loss `_compute_loss`, configured so that it IS the method's loss (docs/METHOD.md):
  loss_type="luspo"               sum over a completion's tokens, mean over completions
  importance_sampling_level=token ratio exp(logp_theta(t) - logp_sampler(t)) per token
  epsilon=inf                     PPO clipping off: min(r A, clip(r) A) = r A
  beta=kl_coef                    + kl_coef * k3(t), k3 = exp(b - l) - (b - l) - 1 to the base
  old_per_token_logps             the sampler's (vLLM's) log-probs of the sampled tokens
Our driver generates (vLLM actors) and scores (environment) itself, so the trainer's own loop
(`train()`: dataloader -> generate -> reward functions -> group-mean advantages) is never run:
`step` feeds one search step's completions, with advantages from discover/advantages.py, to
`trainer.training_step` micro-batch by micro-batch, then clips and takes one AdamW step.
docs/gpu.md says why this and not AsyncGRPOTrainer.

`TRLLearner` runs anywhere (the tests run it on CPU, where its loss and gradient equal
learners/peft.py's); `RemoteLearner` puts it in a Ray actor placed by GPU resources, next to
the vLLM generators, and keeps the driver's policy version in step.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import torch

from discover.backends.base import Sample
from discover.learners.base import Learner
from discover.learners.config import LearnerConfig, check_temperature
from discover.learners.peft import (
    enable_checkpointing,
    load_state,
    movement,
    save_state,
    step_items,
)
from discover.model.logprobs import sequence_log_softmax, sequence_logprobs


def _trainer_class():
    """GRPOTrainer with generation switched off and our loss normaliser (imported lazily: slow)."""
    from trl import GRPOTrainer

    class StepTrainer(GRPOTrainer):
        _captured: list | None = None  # set while compute_loss runs
        stats: list  # (learner log-probs, batch) per micro-batch, read by TRLLearner.backward

        def _prepare_inputs(self, inputs: dict) -> dict:
            return inputs  # batches arrive generated, scored and tensorised: nothing to generate

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            self._captured = []
            try:
                loss = super().compute_loss(model, inputs)
                logp = self._captured[0]
            finally:
                self._captured = None
            # luspo averages over this micro-batch's rows; we average over the step's N completions.
            self.stats.append((logp, inputs))
            return loss * inputs["loss_scale"]

        def _get_per_token_logps_and_entropies(self, *args, **kwargs):
            out = super()._get_per_token_logps_and_entropies(*args, **kwargs)
            if self._captured is not None:  # keep the learner's log-probs for the step's metrics
                self._captured.append(out[0].detach())
            return out

    return StepTrainer


def _reward_from_environment(**_):
    raise RuntimeError("discover scores completions with its environment, not TRL reward functions")


class TRLLearner:
    """`step(groups, rewards) -> metrics`, `save(path)`, `load(path)` like learner.Learner.

    Holds its own model copy (`model`: a model folder), so it needs no in-process sampler; the
    driver hands each saved adapter to the samplers (backends.vllm.VLLMPolicy.load_adapter).
    """

    def __init__(self, model: str, cfg: LearnerConfig, temperature: float = 1.0, seed: int = 0,
                 dtype: str | None = None):
        """`dtype`: the model's weights and compute, None for bfloat16 on a GPU (as vLLM
        samples) and float32 on CPU; "float32" on a GPU compares exactly with the PEFT learner
        (the tests do: in bf16 the loss differs by 1.5%, measured on an H200)."""
        cfg.validate(learning=True)
        check_temperature(temperature)
        from datasets import Dataset
        from transformers import AutoConfig, AutoTokenizer
        from trl import GRPOConfig

        self.cfg, self.temperature = cfg, temperature  # (the sampler's: logits / T)
        if not cfg.prompt_grad:
            warnings.warn("learner.prompt_grad = false (set, or recommended by the environment) "
                          "is the PEFT (CPU) learner's cut; the TRL learner takes the whole "
                          "gradient", stacklevel=2)
        cuda = torch.cuda.is_available()
        dtype = dtype or ("bfloat16" if cuda else "float32")
        self.workdir = tempfile.mkdtemp(prefix="discover-trl-")  # TRL wants an output_dir
        args = GRPOConfig(
            output_dir=self.workdir, report_to="none", save_strategy="no", disable_tqdm=True,
            loss_type="luspo", importance_sampling_level="token", epsilon=math.inf,
            beta=cfg.kl_coef, temperature=temperature, learning_rate=cfg.lr, weight_decay=0.0,
            max_grad_norm=cfg.max_grad_norm, disable_dropout=True, seed=seed,
            # bf16: weights and autocast in bfloat16 (the GPU default, as vLLM samples).
            bf16=dtype == "bfloat16", use_cpu=not cuda, model_init_kwargs={"dtype": dtype},
            # Our own non-reentrant checkpointing below; TRL's would need input grads forced on.
            gradient_checkpointing=False,
            # Unused (no dataloader runs) but validated: the generation batch must split in groups.
            per_device_train_batch_size=2, num_generations=2)
        tokenizer = AutoTokenizer.from_pretrained(model)
        tokenizer.padding_side = "left"
        self.trainer = _trainer_class()(
            model=model, reward_funcs=_reward_from_environment, args=args,
            train_dataset=Dataset.from_dict({"prompt": ["(prompts come from the search)"]}),
            processing_class=tokenizer,
            peft_config=cfg.lora(AutoConfig.from_pretrained(model).num_hidden_layers))
        self.trainer.stats = []
        self.trainer.current_gradient_accumulation_steps = 1  # set by train(), which never runs
        self.model = self.trainer.model  # the PeftModel
        if cfg.grad_checkpointing:
            enable_checkpointing(self.model.get_base_model())
        self.model.eval()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # The same optimiser and rate as learner.py (one group, no weight decay), so saved
        # states match; the rate is the size rule's for this model unless learner.lr is set.
        self.lr = cfg.learning_rate(self.model.config)
        self.optimizer = torch.optim.AdamW(self.params, lr=self.lr, betas=tuple(cfg.betas),
                                           weight_decay=0.0)
        self.trainer.optimizer = self.optimizer
        self.pad_id = tokenizer.pad_token_id
        self.version = 0

    def step(self, groups: list[list[Sample]], rewards: list[list[float]],
             copies: list[list[bool]] | None = None) -> dict:
        """Advantages per group, then ONE optimiser step over all completions with tokens."""
        t0 = time.monotonic()
        metrics = self.backward(groups, rewards, copies)
        if not metrics["skipped"]:
            clip = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else math.inf
            norm = self.trainer.accelerator.clip_grad_norm_(self.params, clip)
            metrics["grad_norm"] = float(norm)
            # How far the update moves the model (policy_kl, logp_change), as peft.py logs it:
            # on the first learner.probe_rows completions, their log-probs taken before it.
            chunk = self._work[:self.cfg.probe_rows]
            with torch.no_grad():
                before = [sequence_logprobs(self.model, s.prompt_ids, s.completion_ids,
                                            self.temperature) for s, _ in chunk]
            self.optimizer.step()
            self.version += 1
            if chunk:
                metrics.update(movement(self.model, chunk, before, self._tables))
        self.optimizer.zero_grad(set_to_none=True)
        metrics.update(seconds=time.monotonic() - t0, version=self.version, lr=self.lr)
        return metrics

    def backward(self, groups: list[list[Sample]], rewards: list[list[float]],
                 copies: list[list[bool]] | None = None) -> dict:
        """The step's loss through `trainer.training_step`; leaves the gradient in .grad."""
        items, work, metrics = step_items(groups, rewards, self.cfg, copies)
        self.optimizer.zero_grad(set_to_none=True)
        self._work = work
        if not work:
            return metrics
        n = len(items)
        loss_sum, kl_base_sum, ratio_sum, ratio_n = 0.0, 0.0, 0.0, 0
        self.trainer.stats = []
        try:
            for i in range(0, len(work), self.cfg.micro_batch):
                batch = self._batch(work[i:i + self.cfg.micro_batch], n)
                loss_sum += float(self.trainer.training_step(self.model, batch, None))
        finally:
            self.model.eval()
        for logp, batch in self.trainer.stats:
            mask = batch["completion_mask"].bool()
            ratios = torch.exp(logp - batch["old_per_token_logps"])[mask]
            ratio_sum += ratios.sum().item()
            ratio_n += ratios.numel()
            if "ref_per_token_logps" in batch:
                d = (batch["ref_per_token_logps"] - logp)[mask]
                kl_base_sum += (torch.exp(d) - d - 1).sum().item()
        self.trainer.stats = []
        entropy = self.trainer._metrics["train"].get("entropy") or [math.nan]
        self.trainer._metrics["train"].clear()  # TRL's logs would grow with every step
        metrics.update(loss=loss_sum, skipped=False, ratio=ratio_sum / max(1, ratio_n),
                       kl_base=kl_base_sum / n, entropy=sum(entropy) / len(entropy))
        return metrics

    def _tables(self, chunk: list[tuple[Sample, float]]) -> list[torch.Tensor]:
        """Each completion's next-token log-softmax at its tokens (for `movement`)."""
        t = self.temperature
        return [sequence_log_softmax(self.model, s.prompt_ids, s.completion_ids, t)
                for s, _ in chunk]

    def _batch(self, work: list[tuple[Sample, float]], n: int) -> dict:
        """GRPOTrainer's input layout: prompts left-padded, completions right-padded."""
        dev = self.trainer.accelerator.device
        width_p = max(len(s.prompt_ids) for s, _ in work)
        width_c = max(len(s.completion_ids) for s, _ in work)

        def rows(seqs, width, fill, left=False):
            pads = [[fill] * (width - len(x)) for x in seqs]
            return [p + list(x) if left else list(x) + p for x, p in zip(seqs, pads, strict=True)]

        prompts = [s.prompt_ids for s, _ in work]
        completions = [s.completion_ids for s, _ in work]
        batch = {
            "prompt_ids": torch.tensor(rows(prompts, width_p, self.pad_id, left=True), device=dev),
            "prompt_mask": torch.tensor(rows([[1] * len(p) for p in prompts], width_p, 0, True),
                                        device=dev),
            "completion_ids": torch.tensor(rows(completions, width_c, self.pad_id), device=dev),
            "completion_mask": torch.tensor(rows([[1] * len(c) for c in completions], width_c, 0),
                                            device=dev),
            "old_per_token_logps": torch.tensor(rows([s.logprobs for s, _ in work], width_c, 0.0),
                                                dtype=torch.float32, device=dev),
            "advantages": torch.tensor([a for _, a in work], dtype=torch.float32, device=dev),
            "loss_scale": len(work) / n,
        }
        if self.cfg.kl_coef > 0:  # the base model is the LoRA model with its adapter off
            from trl.trainer.utils import use_adapter

            ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
            mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
            with torch.no_grad(), use_adapter(self.model, adapter_name=None):
                ref, _, _ = self.trainer._get_per_token_logps_and_entropies(
                    self.model, ids, mask, width_c)
            batch["ref_per_token_logps"] = ref
        return batch

    def save(self, path: str | Path) -> None:
        """Adapter (PEFT format, what vLLM loads), optimiser state and version, as learner.py."""
        save_state(path, self.model, self.optimizer, self.version)

    def load(self, path: str | Path) -> int:
        self.version = load_state(path, self.model, self.optimizer, self.cfg)
        return self.version

    def ready(self) -> int:
        """The version held (a cheap call that waits for the model to load in an actor)."""
        return self.version

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


class RemoteLearner(Learner):
    """The TRL learner in a Ray actor with `gpus` GPUs (0: on CPU); learners.base.Learner.

    Like peft.PeftLearner it moves `policy.version` on each optimiser step; the driver then saves
    the adapter under that version and hands it to the generators (backends.base.publish_adapter).
    The adapter folder must be readable by the generators: on one node it always is; across
    nodes put the run directory on a shared filesystem.
    """

    def __init__(self, policy, model: str, cfg: LearnerConfig, temperature: float = 1.0,
                 seed: int = 0, gpus: float = 1.0):
        import ray

        # num_cpus=0: the CPU slots stay with the scorers (the pool is sized from free CPUs).
        actor = ray.remote(num_gpus=gpus, num_cpus=0, max_restarts=0)(TRLLearner)
        self.actor = actor.remote(model, cfg, temperature, seed)
        self.policy = policy
        self.version = ray.get(self.actor.ready.remote())  # surfaces load errors here

    def step(self, groups: list[list[Sample]], rewards: list[list[float]],
             copies: list[list[bool]] | None = None) -> dict:
        metrics = self.submit(groups, rewards, copies).result()
        self.policy.version = self.version
        return metrics

    def submit(self, groups: list[list[Sample]], rewards: list[list[float]],
               copies: list[list[bool]] | None = None) -> ActorUpdate:
        """The actor's step, started: the generators may sample meanwhile (run.overlap); their
        version moves only when the loop hands them the adapter."""
        return ActorUpdate(self, self.actor.step.remote(groups, rewards, copies))

    def save(self, path: str | Path) -> None:
        import ray

        ray.get(self.actor.save.remote(str(Path(path).resolve())))

    def load(self, path: str | Path) -> None:
        import ray

        self.version = self.policy.version = ray.get(
            self.actor.load.remote(str(Path(path).resolve())))

    def shutdown(self) -> None:
        import ray

        try:
            ray.get(self.actor.close.remote())
        except ray.exceptions.RayActorError:
            pass  # the actor is already gone (its process or node lost): nothing to close
        finally:
            ray.kill(self.actor)


class ActorUpdate:
    """A RemoteLearner step under way (learners.base.Update)."""

    def __init__(self, learner: RemoteLearner, ref) -> None:
        self.learner, self.ref = learner, ref

    def result(self) -> dict:
        import ray

        metrics = ray.get(self.ref)
        self.learner.version = metrics["version"]
        return metrics
