"""The LoRA learner on the real embedded model, at toy size (2 groups x 3 samples x 8 tokens)."""

import pytest
import torch

from discover.advantages import compute_advantages
from discover.backends.base import Sample
from discover.backends.hf import HFPolicy
from discover.learners.config import LearnerConfig
from discover.learners.peft import PeftLearner
from discover.model.logprobs import sequence_logprobs

PROMPTS = ["Write a Python function that adds two numbers.", "Say hello in French."]
REWARDS = [[1.0, 0.0, -1.0], [0.2, -2.0, 0.5]]
PROBE = [1, 9690, 198, 37, 2, 1, 4093, 198, 30, 1, 22, 17, 30]  # fixed token ids for logits


def make(tmp_seed: int = 0, temperature: float = 1.0, **cfg) -> tuple[HFPolicy, PeftLearner]:
    torch.manual_seed(tmp_seed)  # LoRA A matrices are initialised randomly
    policy = HFPolicy(model="smollm2", threads=2)
    return policy, PeftLearner(policy, LearnerConfig(**cfg), temperature=temperature)


def sample(policy, seed: int = 0) -> list[list[Sample]]:
    groups = policy.sample(PROMPTS, 3, max_new_tokens=8, temperature=1.0, seed=seed)
    assert [len(g) for g in groups] == [3, 3]
    assert all(s.completion_ids and len(s.logprobs) == len(s.completion_ids)
               for g in groups for s in g)
    return groups


def logits(model, ids=PROBE) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def lora(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def direct_loss(model, groups, rewards, method="entropic", kl_coef=0.0):
    """docs/METHOD.md's loss written out: -A * exp(logp - logp_sampler), summed, mean over
    samples."""
    terms = []
    for g, r in zip(groups, rewards, strict=True):
        adv, _ = compute_advantages(r, method)
        for s, a in zip(g, adv, strict=True):
            lp = sequence_logprobs(model, s.prompt_ids, s.completion_ids)
            term = -a * torch.exp(lp - torch.tensor(s.logprobs)).sum()
            if kl_coef:
                with torch.no_grad(), model.disable_adapter():
                    base = sequence_logprobs(model, s.prompt_ids, s.completion_ids)
                d = base - lp
                term = term + kl_coef * (torch.exp(d) - d - 1).sum()
            terms.append(term)
    return torch.stack(terms).sum() / len(terms)


def test_loss_and_gradient_match_direct_computation():
    policy, learner = make(micro_batch=4, kl_coef=0.1)
    groups = sample(policy)
    learner.step(groups, REWARDS)  # move off the base so the KL term has a gradient
    # Off-policy: pretend the sampler was a little different, so ratios are not 1.
    for g in groups:
        for s in g:
            s.logprobs = [lp - 0.05 * (k % 3) for k, lp in enumerate(s.logprobs)]
    metrics = learner.backward(groups, REWARDS)
    got = {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.requires_grad}
    assert any(g.abs().max() > 0 for g in got.values())

    learner.optimizer.zero_grad(set_to_none=True)
    loss = direct_loss(policy.model, groups, REWARDS, kl_coef=0.1)
    loss.backward()
    assert metrics["loss"] == pytest.approx(loss.item(), rel=1e-4, abs=1e-6)
    assert metrics["ratio"] != pytest.approx(1.0, abs=1e-3)
    # The learner batches a prompt's completions (float32 sums in another order): entries agree
    # to ~3e-5 of the largest gradient entry (measured), near-zero ones only to that.
    scale = max(g.abs().max() for g in got.values())
    for n, p in policy.model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(got[n], p.grad, rtol=1e-3, atol=1e-4 * scale)


@pytest.mark.slow
def test_batched_learner_equals_the_per_completion_learner():
    """One forward per micro-batch of a prompt's completions (the prompt run once) gives the
    loss, ratios, KL and gradient of one forward per completion, off-policy and with the KL
    term; micro-batches of 2 split each group of 3, so a prompt also runs once per chunk."""
    policy, learner = make(micro_batch=2, kl_coef=0.1)
    assert learner.batched  # the default, where the model allows it (SmolLM2 does)
    groups = sample(policy)
    groups[1][1] = Sample(text="", prompt_ids=groups[1][1].prompt_ids)  # no tokens: no loss
    learner.step(groups, REWARDS)  # off the base, so the KL term has a gradient
    for g in groups:
        for s in g:
            s.logprobs = [lp - 0.05 * (k % 3) for k, lp in enumerate(s.logprobs)]
    lengths = {len(s.completion_ids) for g in groups for s in g}
    results = {}
    for batched in (True, False):
        learner.batched = batched
        m = learner.backward(groups, REWARDS)
        results[batched] = m, {n: p.grad.clone() for n, p in policy.model.named_parameters()
                               if p.requires_grad}
    (mb, gb), (mp, gp) = results[True], results[False]
    assert len(lengths) > 1 or 0 in lengths  # rows of unequal length: padding is exercised
    assert mb["ratio"] != pytest.approx(1.0, abs=1e-3) and mb["kl_base"] > 0
    for key in ("loss", "ratio"):
        assert mb[key] == pytest.approx(mp[key], rel=1e-5, abs=1e-7), key
    # k3 = e^d - d - 1 of log-prob differences d ~ 1e-2 cancels: float32 rounding of the
    # log-probs (~1e-6) shows at ~1e-4 of it (measured 1.6e-4 at most).
    assert mb["kl_base"] == pytest.approx(mp["kl_base"], rel=1e-3)
    # Measured: the largest difference is ~3e-5 of the largest gradient entry (float32 sums).
    scale = max(g.abs().max() for g in gp.values())
    assert scale > 0
    for n, g in gp.items():
        torch.testing.assert_close(gb[n], g, rtol=1e-3, atol=1e-4 * scale)


def test_first_step_is_on_policy_and_updates_the_adapter():
    policy, learner = make(lr=1e-3)
    groups = sample(policy)
    groups[0].append(Sample(text="", prompt_ids=groups[0][0].prompt_ids))  # no tokens: no loss
    rewards = [REWARDS[0] + [-5.0], REWARDS[1]]  # ... but its reward still shapes the advantages
    before = lora(policy.model)
    base_logits = logits(policy.model)
    m = learner.backward(groups, rewards)  # the gradient the step below will use
    grads = {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.requires_grad}

    metrics = learner.step(groups, rewards)
    # Ratio 1 on-policy: loss = -sum_i A_i * n_tokens_i / n_completions (those with tokens).
    adv = [a for r in rewards for a in compute_advantages(r, "entropic")[0]]
    adv = adv[:3] + adv[4:]
    lengths = [len(s.completion_ids) for g in groups for s in g if s.completion_ids]
    expect = -sum(a * n for a, n in zip(adv, lengths, strict=True)) / len(lengths)
    assert metrics["loss"] == pytest.approx(expect, rel=1e-3)
    assert metrics["loss"] == pytest.approx(m["loss"], rel=1e-6)
    assert metrics["ratio"] == pytest.approx(1.0, abs=1e-3)
    assert metrics["tokens"] == sum(lengths) and metrics["completions"] == 6
    assert metrics["skipped"] is False and metrics["grad_norm"] > 0
    assert metrics["version"] == policy.version == 1

    after = lora(policy.model)
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    assert changed
    for n in changed:  # Adam's first step moves every weight against its gradient's sign
        big = grads[n].abs() > 1e-6
        delta = after[n] - before[n]
        assert torch.all(torch.sign(delta[big]) == -torch.sign(grads[n][big]))
    assert not torch.equal(logits(policy.model), base_logits)
    with policy.model.disable_adapter():  # the base model itself is untouched
        torch.testing.assert_close(logits(policy.model), base_logits, rtol=0, atol=0)


@pytest.mark.slow
def test_sampling_after_a_step_uses_the_adapter():
    policy, learner = make(lr=1e-2)
    learner.step(sample(policy), REWARDS)
    groups = sample(policy, seed=1)
    assert all(s.version == 1 for g in groups for s in g)
    s = groups[0][0]
    with torch.no_grad():
        adapted = sequence_logprobs(policy.model, s.prompt_ids, s.completion_ids)
        with policy.model.disable_adapter():
            base = sequence_logprobs(policy.model, s.prompt_ids, s.completion_ids)
    sampled = torch.tensor(s.logprobs)
    assert (sampled - adapted).abs().max() < 1e-2  # samples come from the adapted model
    assert (adapted - base).abs().max() > 5 * (sampled - adapted).abs().max()


@pytest.mark.slow
def test_save_load_restores_adapter_optimizer_and_version(tmp_path):
    policy, learner = make(lr=1e-3)
    groups = sample(policy)
    learner.step(groups, REWARDS)
    learner.save(tmp_path / "v1")

    policy2, learner2 = make(tmp_seed=123, lr=1e-3)  # different random LoRA init
    assert not torch.equal(logits(policy2.model), logits(policy.model))
    learner2.load(tmp_path / "v1")
    assert policy2.version == 1
    torch.testing.assert_close(logits(policy2.model), logits(policy.model), rtol=0, atol=0)
    s1, s2 = learner.optimizer.state_dict(), learner2.optimizer.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    assert s1["state"].keys() == s2["state"].keys() and s1["state"]
    for k in s1["state"]:
        for name, v in s1["state"][k].items():
            torch.testing.assert_close(s2["state"][k][name], v, rtol=0, atol=0)

    # The restored optimiser continues exactly as the original would.
    learner.step(groups, REWARDS)
    learner2.step(groups, REWARDS)
    for n, w in lora(policy.model).items():
        torch.testing.assert_close(lora(policy2.model)[n], w)

    with pytest.raises(FileNotFoundError, match="missing"):
        learner2.load(tmp_path / "nowhere")


def test_all_zero_advantages_skip_the_step():
    policy, learner = make()
    groups = sample(policy)
    before = lora(policy.model)
    metrics = learner.step(groups, [[0.5, 0.5, 0.5], [-2.0, -2.0, -2.0]])
    assert metrics["skipped"] is True and metrics["loss"] == 0.0 and metrics["adv_abs"] == 0.0
    assert metrics["version"] == policy.version == 0
    assert all(torch.equal(before[n], w) for n, w in lora(policy.model).items())
    assert all(p.grad is None for p in policy.model.parameters())

    with pytest.raises(ValueError, match="one reward per sample"):
        learner.step(groups, [[1.0, 0.0]])
    with pytest.raises(ValueError, match="method"):
        PeftLearner(policy, LearnerConfig(method="median"))


@pytest.mark.slow
def test_ratios_are_one_on_policy_at_the_sampling_temperature():
    policy, learner = make(temperature=0.7)
    groups = policy.sample(PROMPTS, 3, max_new_tokens=8, temperature=0.7, seed=0)
    assert learner.backward(groups, REWARDS)["ratio"] == pytest.approx(1.0, abs=1e-3)
    learner.temperature = 1.0  # scoring the same tokens at another temperature is off-policy
    assert learner.backward(groups, REWARDS)["ratio"] != pytest.approx(1.0, abs=1e-2)


def test_prefilled_tokens_are_prompt_tokens_with_no_loss():
    policy, learner = make(lr=1e-3)
    fill = "```python\n# EVOLVE-BLOCK-START\n"
    groups = policy.sample(PROMPTS, 3, max_new_tokens=8, temperature=1.0, seed=0, prefill=fill)
    bare = [policy.encode(p) for p in PROMPTS]
    for g, plain in zip(groups, bare, strict=True):
        for s in g:
            assert s.prefill == fill and s.response == fill + s.text
            assert s.prompt_ids == policy.encode(PROMPTS[groups.index(g)], fill)
            assert s.prompt_ids[:len(plain)] == plain and len(s.prompt_ids) > len(plain) + 5
            assert len(s.logprobs) == len(s.completion_ids)  # none for the prefilled tokens
    metrics = learner.backward(groups, REWARDS)
    # Direct: one forward over chat prompt + prefill + completion; only the completion's
    # positions carry -A * exp(logp - logp_sampler).
    terms = []
    for g, r in zip(groups, REWARDS, strict=True):
        adv, _ = compute_advantages(r, "entropic")
        for s, a in zip(g, adv, strict=True):
            ids = torch.tensor([s.prompt_ids + s.completion_ids])
            with torch.no_grad():
                logp = torch.log_softmax(policy.model(input_ids=ids).logits[0].float(), -1)
            p, k = len(s.prompt_ids), len(s.completion_ids)
            own = logp[p - 1:p + k - 1].gather(1, ids[0, p:, None]).squeeze(1)
            terms.append(-a * torch.exp(own - torch.tensor(s.logprobs)).sum())
    assert metrics["loss"] == pytest.approx(torch.stack(terms).mean().item(), rel=1e-4)
    assert metrics["tokens"] == sum(len(s.completion_ids) for g in groups for s in g)
