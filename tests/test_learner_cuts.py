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
