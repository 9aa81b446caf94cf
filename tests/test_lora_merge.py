"""Sampling through merged LoRA weights (discover/model/lora_merge.py) on a small random model."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import LlamaConfig, LlamaForCausalLM

from discover.model.lora_merge import merged


def tiny_lora() -> PeftModel:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    model = get_peft_model(LlamaForCausalLM(config).eval(),
                           LoraConfig(r=8, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():  # B != 0, as after a learner step, so the adapter changes the output
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model


def test_merged_gives_the_adapted_models_logits_and_puts_the_weights_back():
    model = tiny_lora()
    ids = torch.arange(1, 17)[None]
    with torch.no_grad():
        adapted = model(ids).logits
        with model.disable_adapter():
            base = model(ids).logits
        before = {n: p.clone() for n, p in model.named_parameters()}
        with merged(model):
            inside = model(ids).logits
        after = model(ids).logits
    assert (adapted - base).abs().max() > 1e-2  # the adapter matters here
    torch.testing.assert_close(inside, adapted, rtol=1e-4, atol=1e-4)
    assert torch.equal(after, adapted)  # exact: W0 restored, adapters on again
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n


def test_merged_puts_the_weights_back_when_the_call_fails():
    model = tiny_lora()
    before = {n: p.clone() for n, p in model.named_parameters()}
    with pytest.raises(RuntimeError), merged(model):
        raise RuntimeError("a decode that fails")
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
    assert not any(m.disable_adapters for m in model.modules() if isinstance(m, LoraLayer))
