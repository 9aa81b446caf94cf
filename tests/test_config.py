import pytest

from discover import config as cm
from discover.config import Config, ConfigError


def test_toml_round_trip(tmp_path):
    cfg = cm.apply(Config(), {"run": {"steps": 3, "groups": 1}, "learner": {"lr": 1e-4},
                              "env": {"time_budget_s": 2.5}})
    path = tmp_path / "c.toml"
    path.write_text(cm.dumps(cfg))
    back = cm.from_dict(cm.load_toml(path))
    assert back == cfg


def test_set_overrides_are_typed():
    cfg = cm.apply(Config(), cm.parse_set(["run.steps=7", "learner.lr=1e-4",
                                           "policy.model=foo", "env.time_budget_s=3"]))
    assert cfg.run.steps == 7 and cfg.learner.lr == 1e-4 and cfg.policy.model == "foo"
    assert cfg.env == {"time_budget_s": 3}


@pytest.mark.parametrize("values, message", [
    ({"run": {"stepz": 3}}, "unknown config key run.stepz"),
    ({"nope": {"a": 1}}, "unknown config section [nope]"),
    ({"run": {"steps": "many"}}, "run.steps"),
    ({"run": {"steps": 1.5}}, "run.steps must be int"),
])
def test_bad_values_name_the_problem(values, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        cm.apply(Config(), values)


@pytest.mark.parametrize("key, value", [("run.steps", "0"), ("run.groups", "-1"),
                                        ("run.group_size", "0"), ("learner.method", '"sgd"')])
def test_validate_refuses_bad_sizes(key, value):
    cfg = cm.apply(Config(), cm.parse_set([f"{key}={value}"]))
    with pytest.raises(ConfigError, match=key.split(".")[1]):
        cfg.validate()


def test_malformed_toml(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[run\nsteps = 3")
    with pytest.raises(ConfigError, match="malformed TOML"):
        cm.load_toml(p)


def test_resume_check():
    a = Config()
    b = cm.apply(Config(), {"run": {"steps": 99}})
    cm.check_resume(a, b)  # steps may change
    c = cm.apply(Config(), {"run": {"env": "other"}})
    with pytest.raises(ConfigError, match="run.env"):
        cm.check_resume(a, c)
