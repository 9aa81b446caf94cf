"""The transformers sampling backend, with the real embedded model (HTTP: test_openai_backend)."""

from __future__ import annotations

import pytest
import torch

PROMPTS = ["Say hi.", "Write a Python function that returns the sum of a list of numbers."]
N, NEW = 3, 16


# ---------------------------------------------------------------- transformers backend

def test_draw_follows_the_distribution():
    from discover.policy_hf import draw

    logp = torch.log_softmax(torch.tensor([0.0, 1.0, 2.0, -1.0, -float("inf")]), dim=0)
    rows = logp.expand(8, 5)
    gens = [torch.Generator().manual_seed(s) for s in range(8)]
    counts = sum(torch.bincount(draw(rows, gens), minlength=5) for _ in range(750))
    assert counts[4] == 0  # a token of probability zero is never drawn
    torch.testing.assert_close(counts / counts.sum(), logp.exp(), rtol=0, atol=0.025)
    # Each row's draw depends only on its own generator's seed.
    reseeded = [torch.Generator().manual_seed(s) for s in (7, 0, 1)]
    assert draw(rows[:3], reseeded)[1:].tolist() == draw(rows[:2], [
        torch.Generator().manual_seed(s) for s in (0, 1)]).tolist()


@pytest.fixture(scope="module")
def hf():
    from discover.policy_hf import HFPolicy

    return HFPolicy(model="smollm2", threads=2, batch_size=8)


@pytest.fixture(scope="module")
def groups(hf):
    return hf.sample(PROMPTS, N, max_new_tokens=NEW, temperature=1.0, seed=7)


def texts(groups) -> list[list[str]]:
    return [[s.text for s in g] for g in groups]


@pytest.mark.slow
def test_shapes_template_and_stats(hf, groups):
    assert len(groups) == len(PROMPTS) and all(len(g) == N for g in groups)
    for prompt, group in zip(PROMPTS, groups, strict=True):
        for s in group:
            assert s.prompt_ids and 1 <= len(s.completion_ids) <= NEW
            assert len(s.logprobs) == len(s.completion_ids)
            assert all(lp <= 0 for lp in s.logprobs) and s.version == hf.version == 0
            # The chat template wraps the user text and opens the assistant's turn.
            shown = hf.tokenizer.decode(s.prompt_ids)
            assert prompt in shown and shown.rstrip().endswith("assistant")
            assert s.text == hf.tokenizer.decode(s.completion_ids, skip_special_tokens=True)
            # EOS, if any, is the last token: nothing (no padding) follows it.
            ends = [j for j, t in enumerate(s.completion_ids) if t in hf.eos_ids]
            assert ends in ([], [len(s.completion_ids) - 1])
            assert ends or len(s.completion_ids) == NEW
    assert hf.last_stats["tokens"] == sum(len(s.completion_ids) for g in groups for s in g)
    assert hf.last_stats["seconds"] > 0


@pytest.mark.slow
def test_sampling_logprobs_equal_teacher_forced(hf, groups):
    from discover.policy_hf import sequence_logprobs

    for s in (s for g in groups for s in g):
        with torch.no_grad():
            forced = sequence_logprobs(hf.model, s.prompt_ids, s.completion_ids)
        torch.testing.assert_close(forced, torch.tensor(s.logprobs), rtol=0, atol=1e-3)
    # At another temperature the recorded log-probs are those of the tempered distribution.
    for s in hf.sample(PROMPTS[:1], 2, max_new_tokens=8, temperature=0.6, seed=1)[0]:
        with torch.no_grad():
            forced = sequence_logprobs(hf.model, s.prompt_ids, s.completion_ids, temperature=0.6)
        torch.testing.assert_close(forced, torch.tensor(s.logprobs), rtol=0, atol=1e-3)
    s = groups[1][0]
    lp = sequence_logprobs(hf.model, s.prompt_ids, s.completion_ids)
    assert lp.requires_grad and lp.shape == (len(s.completion_ids),)  # usable by the learner


@pytest.mark.slow
def test_same_seed_same_completions_whatever_the_batch(hf, groups):
    hf.batch_size = 1  # every row alone, unpadded: same draws as in the mixed, padded batch
    try:
        again = hf.sample(PROMPTS, N, max_new_tokens=NEW, temperature=1.0, seed=7)
    finally:
        hf.batch_size = 8
    for g1, g2 in zip(groups, again, strict=True):
        for a, b in zip(g1, g2, strict=True):
            assert a.completion_ids == b.completion_ids and a.text == b.text
            assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-3


@pytest.mark.slow
def test_different_seeds_differ(hf, groups):
    other = hf.sample(PROMPTS, N, max_new_tokens=NEW, temperature=1.0, seed=8)
    assert texts(other) != texts(groups)
    assert len({s.text for s in groups[1]}) > 1  # the n samples of one prompt differ too


@pytest.mark.slow
def test_bad_arguments(hf):
    with pytest.raises(ValueError, match="n >= 1"):
        hf.sample(PROMPTS, 0, max_new_tokens=4, temperature=1.0, seed=0)
    with pytest.raises(ValueError, match="temperature > 0"):
        hf.sample(PROMPTS, 1, max_new_tokens=4, temperature=0.0, seed=0)
    with pytest.raises(TypeError, match="list of strings"):
        hf.sample("one prompt", 1, max_new_tokens=4, temperature=1.0, seed=0)


@pytest.mark.slow
def test_samples_through_a_model_swapped_in_later():
    """The learner replaces policy.model by a PEFT wrapper; sampling must use the new one."""
    from peft import LoraConfig, get_peft_model

    from discover.policy_hf import HFPolicy, sequence_logprobs

    policy = HFPolicy(threads=2)
    before = policy.sample(PROMPTS[:1], 2, max_new_tokens=8, temperature=1.0, seed=3)[0]
    # Random (non-zero) LoRA weights, so the wrapped model really is a different policy.
    policy.model = get_peft_model(policy.model, LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    after = policy.sample(PROMPTS[:1], 2, max_new_tokens=8, temperature=1.0, seed=3)[0]
    assert [s.logprobs for s in after] != [s.logprobs for s in before]
    for s in after:
        with torch.no_grad():
            forced = sequence_logprobs(policy.model, s.prompt_ids, s.completion_ids)
        torch.testing.assert_close(forced, torch.tensor(s.logprobs), rtol=0, atol=1e-3)
