"""The learner's settings: the config file's [learner] section, and what every learner is given.

One dataclass, `LearnerConfig`: discover/config.py loads it from TOML and `--set learner.KEY=V`
and saves it in the run's config.toml; make_learner hands it as it is to the PEFT or TRL learner.
The sampler's temperature is not a learner setting (policy.temperature): the learners take it
as an argument. No torch or PEFT at import (discover/config.py imports this module).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from discover.advantages import METHODS

# The learning rate, sized to the model (issue 26). The method's reference run trained its
# 120B model (gpt-oss-120b, hidden size 2880) at 4e-5 (docs/METHOD.md). Its recipe (tinker-
# cookbook's hyperparam_utils.get_lr) scales a LoRA rate with the model as
# (2000 / hidden_size) ** p, p fitted per family: 0.781 for Llama-style models (our default for
# families it does not name), 0.0775 for Qwen. We move the reference's rate along that rule:
#     lr = 4e-5 * (2880 / hidden_size) ** p
# 1.41e-4 for SmolLM2-135M (hidden size 576, a Llama). The rule's own absolute rate, made for
# supervised fine-tuning (5e-5 x 10 x (2000 / hidden) ** p: 1.32e-3 here), is 9.4 times that
# and broke the 135M model within two updates (docs/benchmarks.md, "Learning that pays").
REFERENCE_LR = 4e-5
REFERENCE_HIDDEN = 2880
LR_EXPONENTS = {"qwen": 0.0775, "llama": 0.781}
# PEFT's name for every linear layer but the output head: attention and MLP alike.
ALL_LINEAR = "all-linear"
COPIES = ("keep", "zero")
NEGATIVES = ("keep", "zero")
BACKENDS = ("auto", "peft", "trl")
NO_LEARNING = "none"  # learner.method: the search runs without a learner


def size_rule_lr(model_config) -> float:
    """The LoRA learning rate the size rule gives a model, from its transformers config."""
    hidden = int(model_config.hidden_size)
    family = str(getattr(model_config, "model_type", "")).lower()
    exponent = next((e for name, e in LR_EXPONENTS.items() if name in family),
                    LR_EXPONENTS["llama"])
    return REFERENCE_LR * (REFERENCE_HIDDEN / hidden) ** exponent


@dataclass
class LearnerConfig:
    method: str = "entropic"  # entropic | entropic-fixed | mean | none (no learning)
    beta: float = 2.0  # for entropic-fixed
    lr: float = 0.0  # 0: the method's rate sized to the model (size_rule_lr above; 1.41e-4
    # for the embedded 135M model), any other value is used as it is
    # Multiplies the size rule's rate (not a set `lr`): a rate that follows the model when an
    # environment recommends a faster one (Erdős: 2, with prompt_grad false; docs/benchmarks.md).
    lr_scale: float = 1.0
    lora_rank: int = 32  # the method's
    lora_alpha: int = 32
    # module names, or "all-linear": every linear layer of the decoder (attention and MLP)
    lora_targets: list[str] = field(default_factory=lambda: [ALL_LINEAR])
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])  # AdamW's, as the method's
    # LoRA on the top N decoder layers only (0: every layer, the method's). Fewer layers cut the
    # backward pass, which stops at the lowest adapted layer (docs/benchmarks.md, issue 34).
    layers: int = 0
    # Children whose program is their parent's (comments and whitespace aside): "keep" them in
    # the advantages as the method does; "zero" gives them advantage 0 (a stated deviation).
    # Measured (docs/benchmarks.md, "Copies"), 5 paired seeds: zero tied keep on Erdos in every
    # seed and never beat it on AC2 (2 losses, 3 ties), though it trains far fewer rows; so the
    # method's keep stays the default.
    copies: str = "keep"
    # Children below their group's baseline (A < 0), failures first: "keep" pushes them down as
    # the method does; "zero" gives them advantage 0 (a stated deviation), so a failed try of a
    # new knob value is not taught away before one runs (docs/benchmarks.md, "Knob edits tried").
    negatives: str = "keep"
    kl_coef: float = 0.0
    max_grad_norm: float = 1.0  # <= 0: no clipping (the norm is still reported)
    grad_checkpointing: bool = True  # recompute activations in the backward pass
    micro_batch: int = 8  # completions per forward/backward pass
    # The movement probe (policy_kl, logp_change: how far an update moved the model) runs on the
    # first probe_rows completions of a step: two extra passes that buy no learning, about 15%
    # of a demo update (docs/benchmarks.md); 0 leaves the probe (and those figures) out.
    probe_rows: int = 2
    # One forward per micro-batch of a prompt's completions, the prompt run once (group_logprobs);
    # False: one forward per completion (the earlier learner; also where the model cannot).
    batched: bool = True
    # False: the prompt pass runs without gradient (needs `batched`), so the backward covers the
    # completions only; the gradient leaves out the path through the prompt's keys/values. A
    # stated deviation from the method, for time (docs/METHOD.md, docs/benchmarks.md, issue 34).
    prompt_grad: bool = True
    backend: str = "auto"  # peft (in-process, CPU) | trl (Ray actor, GPU) | auto: trl with vllm
    gpus: float = 1.0  # GPUs of the TRL learner actor (0: on CPU)
    # run.overlap on CPU: torch threads of the learner's worker thread (0: all usable cores);
    # the sampler keeps policy.threads, so the two may share the cores or divide them.
    threads: int = 0

    def validate(self, learning: bool = False) -> None:
        """The section's own checks (ValueError naming the key; Config.validate makes them
        ConfigErrors). `learning`: for a learner being built, where method "none" is refused."""
        for name, low in (("lora_rank", 1), ("lora_alpha", 1), ("micro_batch", 1),
                          ("kl_coef", 0), ("beta", 0), ("layers", 0),
                          ("threads", 0), ("probe_rows", 0)):
            value = getattr(self, name)
            if not value >= low:  # (also refuses NaN)
                raise ValueError(f"learner.{name} must be at least {low}, got {value}")
        if not self.lr_scale > 0:
            raise ValueError(f"learner.lr_scale must be positive, got {self.lr_scale}")
        if not self.lr >= 0:
            raise ValueError(f"learner.lr must be positive, or 0 for the size rule; got {self.lr}")
        targets = self.lora_targets
        if not targets or not all(isinstance(t, str) and t.strip() for t in targets):
            raise ValueError("learner.lora_targets must list module names (or \"all-linear\"), "
                             f"got {targets!r}")
        betas = self.betas
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise ValueError(f"learner.betas must be two numbers in [0, 1) (AdamW's), got "
                             f"{betas!r}")
        if self.copies not in COPIES:
            raise ValueError(f"learner.copies must be keep or zero, got {self.copies!r}")
        if self.negatives not in NEGATIVES:
            raise ValueError(f"learner.negatives must be keep or zero, got {self.negatives!r}")
        methods = (NO_LEARNING, *METHODS)
        if self.method not in methods:
            raise ValueError(f"learner.method must be one of {methods}, got {self.method!r}")
        if learning and self.method == NO_LEARNING:
            raise ValueError(f"learner.method = {NO_LEARNING!r} trains nothing: make no learner "
                             f"for it; a learner needs one of {METHODS}")
        if self.backend not in BACKENDS:
            raise ValueError(f"learner.backend must be auto, peft or trl, got {self.backend!r}")
        if self.gpus < 0:
            raise ValueError(f"learner.gpus must be >= 0, got {self.gpus}")

    def learning_rate(self, model_config) -> float:
        """`lr` where set, else the size rule's rate for this model times `lr_scale`."""
        return self.lr or self.lr_scale * size_rule_lr(model_config)

    def lora(self, num_layers: int = 0):
        """PEFT's LoraConfig for these settings (imports peft); `num_layers`: the model's decoder
        layers, needed where `layers` picks the top ones."""
        from peft import LoraConfig

        targets = list(self.lora_targets)
        config = LoraConfig(r=self.lora_rank, lora_alpha=self.lora_alpha, lora_dropout=0.0,
                            target_modules=targets[0] if targets == [ALL_LINEAR] else targets,
                            bias="none", task_type="CAUSAL_LM")
        # Set after construction: LoraConfig refuses layers with the "all-linear" string, which
        # PEFT expands to module names only when it wraps the model (and then filters layers).
        config.layers_to_transform = self.top_layers(num_layers)
        return config

    def top_layers(self, num_layers: int) -> list[int] | None:
        """The decoder layers the adapter sits on, None for all of them."""
        if not self.layers or self.layers >= num_layers:
            return None
        return list(range(num_layers - self.layers, num_layers))


def check_temperature(temperature: float) -> None:
    """The sampler's temperature a learner scores at (policy.temperature): logits / T."""
    if not temperature > 0:
        raise ValueError(f"the learner's temperature (the sampler's, policy.temperature) must "
                         f"be positive, got {temperature}")
