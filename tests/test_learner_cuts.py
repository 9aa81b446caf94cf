"""Issue 34's cheaper learner: the step's profile accounts for all of it, and skipping rows whose
advantage is zero changes nothing in the update. One learner on the embedded model, shared by the
module and reset to its first state before each test (2 prompts x 3 samples x 8 tokens)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from discover.backends.hf import HFPolicy
from discover.learners import peft
from discover.learners.config import LearnerConfig
from discover.learners.peft import PeftLearner
from discover.model.cpu_flags import cpu_has_amx_bf16
from discover.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["Write a Python function that adds two numbers.", "Say hello in French."]
ZERO_GROUP = [[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]]  # the second group: A = 0 for every row


def load_profiler():
    sys.path.insert(0, str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location("profile_learner",
                                                  ROOT / "scripts" / "profile_learner.py")
    module = sys.modules["profile_learner"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # (its dataclass looks itself up in sys.modules)
    return module


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(learner, groups, folder of its first state); a test calls reset(setup) first."""
    policy = HFPolicy(model="smollm2", threads=2)
    learner = PeftLearner(policy, LearnerConfig(micro_batch=2, lr=1e-3), seed=0)
    groups = policy.sample(PROMPTS, 3, max_new_tokens=8, temperature=1.0, seed=0)
    first = tmp_path_factory.mktemp("first")
    learner.save(first)
    return learner, groups, first


def reset(setup) -> None:
    learner, _, first = setup
    learner.load(first)


def lora(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.slow  # a whole profiled step (20-30 s): the --all tier
def test_the_profile_parts_add_up_to_the_step(setup, tmp_path):
    reset(setup)
    learner, groups, _ = setup
    profiler = load_profiler()
    row = profiler.profile_step(learner, groups, ZERO_GROUP, RunDir(tmp_path))
    parts = row["parts"]
    assert {"lora forward", "backward", "optimiser", "movement probe", "adapter save",
            "hand-off"} <= set(parts)
    # The parts do not overlap and lie inside the whole: what they miss is Python bookkeeping.
    assert 0.9 <= sum(parts.values()) / row["total"] <= 1.0 + 1e-9
    assert row["residual"] == pytest.approx(row["total"] - sum(parts.values()))


def test_skipping_zero_advantage_rows_gives_the_same_update(setup):
    learner, groups, _ = setup
    profiler = load_profiler()
    updates, rows = {}, {}
    for keep in (False, True):
        reset(setup)
        with profiler.zero_rows_kept(keep):
            metrics = learner.step(groups, ZERO_GROUP)
        updates[keep], rows[keep] = lora(learner.model), len(learner._work)
        assert metrics["completions"] == 6 and not metrics["skipped"]
    assert rows == {False: 3, True: 6}  # the skip did skip the group of equal rewards
    # A zero row's loss term is exactly 0; only float sums over other batch shapes differ.
    # Adam's first step is about lr * sign(gradient), so entries whose gradient is ~0 may differ
    # by up to lr: compare the update, not the weights, relative to lr.
    reset(setup)
    first = lora(learner.model)
    for n, w in updates[True].items():
        torch.testing.assert_close(updates[False][n] - first[n], w - first[n], rtol=0,
                                   atol=1e-3 * learner.lr)


def test_bf16_autocast_only_where_the_cpu_has_amx(setup, monkeypatch):
    learner = setup[0]
    assert learner.bf16 == cpu_has_amx_bf16()
    monkeypatch.setattr(peft, "cpu_has_amx_bf16", lambda: True)
    assert PeftLearner(learner.policy, LearnerConfig(micro_batch=2)).bf16


def test_a_prompt_without_gradient_keeps_the_values_and_drops_only_the_prompts_path(setup):
    """learner.prompt_grad = false: the same log-probs; the gradient is the one of completions
    read against a prompt cache made without gradient (computed here per row, HF's own cache),
    and not the whole gradient."""
    learner, groups, _ = setup
    reset(setup)
    learner.step(groups, ZERO_GROUP[:1] + [[0.0, 1.0, 0.5]])  # B != 0: the prompt path counts
    rewards = [[1.0, 0.0, -1.0], [0.0, 1.0, 0.5]]
    grads, before = {}, {}
    for prompt_grad in (True, False):
        learner.cfg.prompt_grad = prompt_grad
        try:
            learner.backward(groups, rewards)
        finally:
            learner.cfg.prompt_grad = True
        grads[prompt_grad] = {n: p.grad.clone() for n, p in learner.model.named_parameters()
                              if p.grad is not None}
        before[prompt_grad] = learner._before
        learner.optimizer.zero_grad(set_to_none=True)
    for a, b in zip(before[True], before[False], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    full, partial = (torch.cat([g[n].flatten() for n in sorted(g)]) for g in grads.values())
    assert not torch.allclose(full, partial, atol=1e-6 * full.abs().max())

    # The same partial gradient, one completion at a time through HF's key/value cache.
    # (In eval mode: checkpointing, active in train mode only, would drop the cache.)
    items, work, _ = peft.step_items(groups, rewards, learner.cfg)
    for s, a in work:
        with torch.no_grad():
            out = learner.model(input_ids=torch.tensor([s.prompt_ids]), use_cache=True)
        logits = torch.cat([out.logits[0, -1:], learner.model(
            input_ids=torch.tensor([s.completion_ids]), cache=out.past_key_values,
            use_cache=True).logits[0, :-1]])
        logp = torch.log_softmax(logits.float() / learner.temperature, dim=-1).gather(
            1, torch.tensor(s.completion_ids)[:, None]).squeeze(1)
        pg, _, _ = PeftLearner._completion_loss(s, a, logp, None)
        (pg / len(items)).backward()
    by_rows = {n: p.grad.clone() for n, p in learner.model.named_parameters()
               if p.grad is not None}
    learner.optimizer.zero_grad(set_to_none=True)
    assert set(by_rows) == set(grads[False])
    for n, g in grads[False].items():
        torch.testing.assert_close(g, by_rows[n], rtol=1e-3, atol=1e-5 * g.abs().max() + 1e-9)


def test_a_prompt_without_gradient_needs_the_batched_learner(setup):
    learner = setup[0]
    with pytest.warns(UserWarning, match="learner.prompt_grad = false needs the batched"):
        other = PeftLearner(learner.policy, LearnerConfig(batched=False, prompt_grad=False))
    assert not other.batched
