"""The transformers sampling backend, with the real embedded model (HTTP: test_openai_backend)."""

from __future__ import annotations

import pytest
import torch

from discover.backends.base import check_sample_args

PROMPTS = ["Say hi.", "Write a Python function that returns the sum of a list of numbers."]
N, NEW = 3, 16


# ---------------------------------------------------------------- transformers backend

def test_draw_follows_the_distribution():
    from discover.backends.hf import draw

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
def hf(embedded_policy):
    embedded_policy.batch_size, embedded_policy.shared_prefill = 8, True
    return embedded_policy


@pytest.fixture(scope="module")
def groups(hf):
    return hf.sample(PROMPTS, N, max_new_tokens=NEW, temperature=1.0, seed=7)


def texts(groups) -> list[list[str]]:
    return [[s.text for s in g] for g in groups]


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


def test_sampling_logprobs_equal_teacher_forced(hf, groups):
    from discover.model.logprobs import sequence_logprobs

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


def test_shared_prefill_samples_what_per_row_prefill_samples(hf, groups):
    """Each prompt prefilled once for its rows gives the completions and log-probs of a prefill
    per row (the earlier sampler: left-padded batches, one cache row per completion), for the
    same seeds; also when a prompt's rows span batches, and streamed to on_sample as they end."""
    assert hf.shared_prefill  # the default: the fixture's groups came from the shared path
    streamed = []
    hf.shared_prefill, hf.batch_size = False, 4
    try:
        per_row = hf.sample(PROMPTS, N, max_new_tokens=NEW, temperature=1.0, seed=7)
        hf.shared_prefill = True  # batches of 4 rows: the first prompt's 3 and 1 of the second
        split = hf.sample(PROMPTS, N, max_new_tokens=NEW, temperature=1.0, seed=7,
                          on_sample=lambda i, k, s: streamed.append((i, k, s)))
    finally:
        hf.shared_prefill, hf.batch_size = True, 8
    lengths = [len(s.completion_ids) for g in groups for s in g]
    assert min(lengths) < NEW == max(lengths)  # rows that stopped early were dropped mid-batch
    for shared in (groups, split):
        for g1, g2 in zip(shared, per_row, strict=True):
            for a, b in zip(g1, g2, strict=True):
                assert a.completion_ids == b.completion_ids and a.text == b.text
                assert a.prompt_ids == b.prompt_ids
                torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs),
                                           rtol=0, atol=1e-4)
    assert sorted((i, k) for i, k, _ in streamed) == [(i, k) for i in range(2) for k in range(N)]
    assert all(s is split[i][k] for i, k, s in streamed)


@pytest.mark.slow  # 30 s of decoding: the --all tier
def test_a_row_stops_at_the_closing_fence(hf):
    """With the code block opened by the prefill, a row ends at the token that closes it (kept),
    in the shared and the per-row sampler alike, and nothing else changes: the rows that never
    close it are the completions sampled without a stop text."""
    from discover.backends.base import stopped

    ask = ["Write a Python function that returns the sum of a list of numbers."] * 2
    kw = dict(max_new_tokens=64, temperature=0.7, seed=3, prefill="```python\n")
    free = hf.sample(ask, 4, **kw)
    got = {}
    for shared in (True, False):
        hf.shared_prefill = shared
        try:
            got[shared] = hf.sample(ask, 4, stop=("```",), **kw)
        finally:
            hf.shared_prefill = True
    closed = 0
    for g_free, g_a, g_b in zip(free, got[True], got[False], strict=True):
        for f, a, b in zip(g_free, g_a, g_b, strict=True):
            assert a.completion_ids == b.completion_ids and a.text == b.text
            n = len(a.completion_ids)
            assert f.completion_ids[:n] == a.completion_ids  # the same draws, cut
            if stopped(a.text, ["```"]):  # ended by the fence: the last token completed it
                closed += 1
                assert not stopped(hf.tokenizer.decode(a.completion_ids[:-1]), ["```"])
            else:
                assert a.completion_ids == f.completion_ids
    assert closed >= 2, "the model closed too few blocks to test the stop"


def test_different_seeds_differ(hf, groups):
    other = hf.sample(PROMPTS, N, max_new_tokens=NEW, temperature=1.0, seed=8)
    assert texts(other) != texts(groups)
    assert len({s.text for s in groups[1]}) > 1  # the n samples of one prompt differ too


def test_one_check_of_sample_arguments():
    check_sample_args(["p"], 1, 1, 0.0, greedy_at_zero=True)  # an endpoint samples greedily
    with pytest.raises(ValueError, match="temperature > 0; got n=1, max_new_tokens=1"):
        check_sample_args(["p"], 1, 1, 0.0)
    with pytest.raises(ValueError, match="temperature >= 0"):
        check_sample_args(["p"], 1, 1, -1.0, greedy_at_zero=True)
    with pytest.raises(ValueError, match="max_new_tokens >= 1"):
        check_sample_args(["p"], 1, 0, 1.0)
    with pytest.raises(TypeError, match="list of strings"):
        check_sample_args("p", 1, 1, 1.0)


def test_bad_arguments(hf):
    with pytest.raises(ValueError, match="n >= 1"):
        hf.sample(PROMPTS, 0, max_new_tokens=4, temperature=1.0, seed=0)
    with pytest.raises(ValueError, match="temperature > 0"):
        hf.sample(PROMPTS, 1, max_new_tokens=4, temperature=0.0, seed=0)
    with pytest.raises(TypeError, match="list of strings"):
        hf.sample("one prompt", 1, max_new_tokens=4, temperature=1.0, seed=0)


def test_samples_through_a_model_swapped_in_later():
    """The learner replaces policy.model by a PEFT wrapper; sampling must use the new one."""
    from peft import LoraConfig, get_peft_model

    from discover.backends.hf import HFPolicy
    from discover.model.logprobs import sequence_logprobs

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
