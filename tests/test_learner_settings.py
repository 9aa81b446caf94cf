"""The learner's settings follow the model (size rule, LoRA on every decoder linear), and with
them five steps on a fixed Erdős group teach the rewarded edit over the copy; the old settings
(4e-5, rank 16 on attention) do not (issue 26)."""

import json
from types import SimpleNamespace

import pytest
import torch

from discover import config as config_mod
from discover import prompt
from discover.backends.base import Sample
from discover.backends.hf import HFPolicy
from discover.config import Config, ConfigError
from discover.environment import Parent
from discover.learners.config import LearnerConfig, size_rule_lr
from discover.learners.peft import PeftLearner
from discover.model.logprobs import sequence_logprobs
from discover.registry import load_environment

OLD = dict(lr=4e-5, lora_rank=16, lora_targets=["q_proj", "k_proj", "v_proj", "o_proj"],
           betas=[0.9, 0.999])
MLP = {"gate_proj", "up_proj", "down_proj"}
ATTENTION = {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_size_rule_gives_the_documented_rate():
    # the reference's 4e-5 at hidden size 2880, moved by (2880 / 576) ** 0.781 (the exponent of
    # tinker-cookbook's get_lr for a Llama-style model)
    assert size_rule_lr(SimpleNamespace(hidden_size=576, model_type="llama")) == \
        pytest.approx(1.4061e-4, rel=1e-3)
    assert size_rule_lr(SimpleNamespace(hidden_size=2880, model_type="llama")) == \
        pytest.approx(4e-5)
    # Qwen's exponent is 0.0775: the rate hardly moves with size
    assert size_rule_lr(SimpleNamespace(hidden_size=4096, model_type="qwen2")) == \
        pytest.approx(4e-5 * (2880 / 4096) ** 0.0775)
    model = SimpleNamespace(hidden_size=576, model_type="llama")
    assert LearnerConfig().learning_rate(model) == pytest.approx(1.4061e-4, rel=1e-3)
    assert LearnerConfig(lr=1e-4).learning_rate(model) == 1e-4  # learner.lr overrides the rule
    # learner.lr_scale moves the rule's rate (Erdős recommends 2), not a rate that is set
    assert LearnerConfig(lr_scale=2.0).learning_rate(model) == pytest.approx(2.8122e-4, rel=1e-3)
    assert LearnerConfig(lr=1e-4, lr_scale=2.0).learning_rate(model) == 1e-4
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="learner.lr_scale must be positive"):
            LearnerConfig(lr_scale=bad).validate()


def test_the_config_section_is_the_learners_config():
    cfg = config_mod.apply(Config(), config_mod.parse_set(
        ["learner.lora_targets=q_proj,v_proj", "learner.lr=2e-4", "learner.copies=zero",
         "learner.betas=0.9,0.999", "learner.grad_checkpointing=false"]))
    cfg.validate()
    lc = cfg.learner
    assert isinstance(lc, LearnerConfig)  # one dataclass: what the learners take, as it is
    assert lc.lora_targets == ["q_proj", "v_proj"] and lc.lr == 2e-4 and lc.copies == "zero"
    assert lc.betas == [0.9, 0.999] and lc.grad_checkpointing is False and lc.lora_rank == 32
    assert lc.lora().target_modules == {"q_proj", "v_proj"}
    assert Config().learner.lora_targets == ["all-linear"] and Config().learner.lr == 0.0
    assert Config().learner.betas == [0.9, 0.95] and Config().learner.grad_checkpointing is True
    assert LearnerConfig().lora().target_modules == "all-linear"
    assert not hasattr(lc, "temperature")  # the sampler's (policy.temperature), passed apart


def test_a_learner_refuses_no_learning_and_a_bad_temperature():
    LearnerConfig(method="none").validate()  # the config admits it: no learner is made
    with pytest.raises(ValueError, match="learner.method = 'none'"):
        LearnerConfig(method="none").validate(learning=True)
    from discover.learners.config import check_temperature

    with pytest.raises(ValueError, match="temperature"):
        check_temperature(0.0)


def test_an_old_run_config_without_the_newer_learner_keys_resumes(tmp_path):
    """A run's config.toml written before learner.betas and learner.grad_checkpointing were
    keys lacks them: it loads with their defaults and resumes under today's config."""
    text = config_mod.dumps(Config())
    old = "\n".join(line for line in text.splitlines()
                    if not line.startswith(("betas =", "grad_checkpointing =")))
    assert "betas" not in old and "grad_checkpointing" not in old
    path = tmp_path / "config.toml"
    path.write_text(old)
    saved = config_mod.from_dict(config_mod.load_toml(path))
    assert saved == Config()
    config_mod.check_resume(saved, Config())


def test_learner_betas_round_trip_and_are_checked(tmp_path):
    cfg = config_mod.apply(Config(), {"learner": {"betas": [0.8, 0.99]}})
    path = tmp_path / "c.toml"
    path.write_text(config_mod.dumps(cfg))
    assert "betas = [0.8, 0.99]" in path.read_text()
    assert config_mod.from_dict(config_mod.load_toml(path)) == cfg
    for bad in (["learner.betas=[0.9]"], ["learner.betas=0.9,1.5"]):
        with pytest.raises(ConfigError, match="learner.betas"):
            config_mod.from_dict(config_mod.parse_set(bad))
    with pytest.raises(ConfigError, match="learner.betas"):
        config_mod.apply(Config(), config_mod.parse_set(["learner.betas=a,b"]))


@pytest.mark.parametrize("item, name", [("learner.lora_targets=[]", "learner.lora_targets"),
                                        ("learner.copies=some", "learner.copies"),
                                        ("learner.negatives=half", "learner.negatives"),
                                        ("learner.lr=-1", "learner.lr"),
                                        ("learner.layers=-1", "learner.layers")])
def test_bad_learner_settings_are_refused_by_name(item, name):
    cfg = config_mod.apply(Config(), config_mod.parse_set([item]))
    with pytest.raises(ConfigError, match=name):
        cfg.validate()


def test_layers_puts_the_adapter_on_the_top_layers_only():
    assert LearnerConfig().lora(30).layers_to_transform is None  # every layer, the default
    assert LearnerConfig(layers=3).lora(30).layers_to_transform == [27, 28, 29]
    assert LearnerConfig(layers=3).lora(30).target_modules == "all-linear"
    assert LearnerConfig(layers=40).lora(30).layers_to_transform is None


def test_resume_with_other_lora_targets_is_refused():
    saved, new = Config(), Config()
    new.learner.lora_targets = ["q_proj", "v_proj"]
    with pytest.raises(ConfigError, match="learner.lora_targets"):
        config_mod.check_resume(saved, new)


@pytest.mark.slow
def test_lora_targets_reach_the_saved_adapter_and_a_load_checks_them(tmp_path):
    torch.manual_seed(0)
    policy = HFPolicy(model="smollm2", threads=2)
    learner = PeftLearner(policy, LearnerConfig())
    learner.save(tmp_path / "a")
    saved = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert set(saved["target_modules"]) == ATTENTION | MLP and saved["r"] == 32
    attention_only = PeftLearner(HFPolicy(model="smollm2", threads=2),
                                 LearnerConfig(lora_targets=sorted(ATTENTION)))
    with pytest.raises(ValueError, match="lora_targets"):
        attention_only.load(tmp_path / "a")


# --- the probe: a fixed Erdős group, stepped 5 times ----------------------------------------
EDIT = "K = 3  # how many values one move changes\n"
COPY = "K = 1  # how many values one move changes\n"


def erdos_group(policy: HFPolicy) -> tuple[list[Sample], list[float], list[bool]]:
    """One prompt (the starter as parent) and 6 answers: 2 rewarded edits (K = 3), 2 verbatim
    copies of the block with a spread of rewards (as new seeds give them), 2 failures."""
    env = load_environment("erdos")
    code = env.starter_program()
    parent = Parent(code=code, artifact=[0.5] * 50, score=0.41, parent_score=0.42, stdout="")
    text = prompt.render(env, parent)
    pre = prompt.prefill(env, parent)
    block = code[code.index("EVOLVE-BLOCK-START"):code.index("# EVOLVE-BLOCK-END")]
    block = block.split("\n", 1)[1]
    answers = [block.replace(COPY, EDIT)] * 2 + [block] * 2 + ["import os\nos.system('x')\n"] * 2
    rewards = [-0.383, -0.3832, -0.4101, -0.4098, -0.84, -0.84]
    ids = policy.encode(text, pre)
    samples = []
    for a in answers:
        completion = policy.tokenizer(a + "# EVOLVE-BLOCK-END\n```", add_special_tokens=False)
        cids = completion["input_ids"]
        with torch.no_grad():
            lp = sequence_logprobs(policy.model, ids, cids, 0.4)
        samples.append(Sample(text=a, prompt_ids=ids, completion_ids=cids,
                              logprobs=lp.tolist(), prefill=pre))
    return samples, rewards, [False] * 2 + [True] * 2 + [False] * 2


def edit_over_copy(policy: HFPolicy, samples: list[Sample]) -> float:
    with torch.no_grad():
        edit = sequence_logprobs(policy.model, samples[0].prompt_ids, samples[0].completion_ids,
                                 0.4).sum()
        copy = sequence_logprobs(policy.model, samples[2].prompt_ids, samples[2].completion_ids,
                                 0.4).sum()
    return float(edit - copy)


def probe(**settings) -> tuple[float, list[dict]]:
    """How much 5 steps raise log p(edit) - log p(copy), with the steps' metrics."""
    torch.manual_seed(0)
    policy = HFPolicy(model="smollm2", threads=2)
    learner = PeftLearner(policy, LearnerConfig(**settings), temperature=0.4)
    samples, rewards, copies = erdos_group(policy)
    before = edit_over_copy(policy, samples)
    metrics = [learner.step([samples], [rewards], [copies]) for _ in range(5)]
    return edit_over_copy(policy, samples) - before, metrics


@pytest.mark.slow
def test_default_settings_learn_the_rewarded_edit_the_old_ones_do_not():
    gain, metrics = probe()
    old_gain, old_metrics = probe(**OLD)
    margin = 2.0  # nats of log p(edit) - log p(copy) after 5 steps
    assert gain > margin, (gain, metrics)
    assert old_gain < margin, (old_gain, old_metrics)
    # the logged movement says the same: the default settings move the model far more
    assert metrics[-1]["policy_kl"] > 10 * old_metrics[-1]["policy_kl"]
    assert all(m["logp_change"] > 0 and m["copies"] == 2 for m in metrics)
    assert metrics[0]["lr"] == pytest.approx(1.4061e-4, rel=1e-3)


@pytest.mark.slow
def test_copies_zero_gives_the_copies_no_advantage():
    torch.manual_seed(0)
    policy = HFPolicy(model="smollm2", threads=2)
    samples, rewards, copies = erdos_group(policy)
    from discover.learners.peft import step_items

    items, work, m = step_items([samples], [rewards], LearnerConfig(copies="zero"), [copies])
    assert [a for (_, a) in items][2:4] == [0.0] * 2 and len(work) == 4
    items, work, m = step_items([samples], [rewards], LearnerConfig(), [copies])  # keep
    assert len(work) == 6 and m["copies"] == 2
    assert m["copy_adv_share"] == 0.0  # the edits are best: the copies' advantages are < 0
    lucky = rewards[:2] + [-0.38] + rewards[3:]  # a copy whose new seed ran best
    _, _, m = step_items([samples], [lucky], LearnerConfig(), [copies])
    assert 0.3 < m["copy_adv_share"] < 1


def test_negatives_zero_pushes_nothing_down_and_keeps_the_positive_advantages():
    from discover.learners.peft import step_items

    samples = [Sample(text=f"{i}", prompt_ids=[1, 2], completion_ids=[3, 4 + i],
                      logprobs=[-0.1, -0.2]) for i in range(6)]
    rewards = [-0.383, -0.3832, -0.4101, -0.4098, -0.84, -0.84]  # 2 edits, 2 copies, 2 failures
    keep, keep_work, _ = step_items([samples], [rewards], LearnerConfig())
    zero, zero_work, _ = step_items([samples], [rewards], LearnerConfig(negatives="zero"))
    keep_a, zero_a = [a for _, a in keep], [a for _, a in zero]
    assert min(keep_a) < 0 and keep_a[4] < 0 and keep_a[5] < 0  # the method pushes failures down
    assert zero_a == [max(a, 0.0) for a in keep_a]
    assert [s.text for s, _ in zero_work] == [s.text for s, a in keep if a > 0]
    assert len(keep_work) == 6
