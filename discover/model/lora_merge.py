"""Sampling through merged LoRA weights: W0 + scale * B A in each adapted layer, for one call.

PEFT's LoRA layer adds two small matrix products and a few Python calls to every adapted
linear layer on every forward; decoding makes one forward per token, so the embedded model
sampled about 1.6x slower with the adapter than without it (13.7 -> 22.2 s a demo step, Intel
Xeon, issue 34). Inside `merged(model)` each adapted layer's base weight holds W0 + delta and the
adapters are switched off, so a decode step costs what the base model's does. The untouched W0
are kept (one copy of the adapted weights), and put back on the way out: the learner always
trains against the exact W0, with no drift from repeated merges. Log-probs agree with the
unmerged model's to float32 rounding (another summation order).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

_ORIGINALS = "_discover_lora_w0"


def _lora_layers(model) -> list:
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)
            and isinstance(getattr(m, "base_layer", None), torch.nn.Linear)]


@contextmanager
def merged(model) -> Iterator[None]:
    """Within: the model's active LoRA adapter folded into its base weights (no gradient)."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        yield
        return
    layers = _lora_layers(model)
    originals = getattr(model, _ORIGINALS, None)
    if originals is None:  # made once per model: the base weights never change
        originals = [m.base_layer.weight.detach().clone() for m in layers]
        object.__setattr__(model, _ORIGINALS, originals)  # not a module attribute: not saved
    adapter = model.active_adapter
    try:
        with torch.no_grad():
            for m, w0 in zip(layers, originals, strict=True):
                if adapter in m.lora_A:
                    m.base_layer.weight.copy_(w0 + m.get_delta_weight(adapter))
        with model.disable_adapter():
            yield
    finally:
        with torch.no_grad():
            for m, w0 in zip(layers, originals, strict=True):
                m.base_layer.weight.copy_(w0)
