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


def test_resolve_layers_lowest_first():
    cfg = cm.resolve([{"run": {"steps": 3, "seed": 1}}, {"run": {"steps": 4}},
                      cm.parse_set(["run.steps=5"])])
    assert (cfg.run.steps, cfg.run.seed) == (5, 1)


@pytest.mark.parametrize("backend", ["null", "openai"])
def test_no_learner_by_default_where_there_are_no_weights(backend):
    layers = [{"policy": {"backend": backend, "base_url": "http://x/v1"}}]
    assert cm.resolve(layers).learner.method == "none"
    with pytest.raises(ConfigError, match="no weights to train"):  # named: refused, not dropped
        cm.resolve(layers + [{"learner": {"method": "entropic"}}])
    assert cm.resolve([]).learner.method == "entropic"


def test_cli_and_ablate_layer_the_same_way():
    import argparse
    import importlib.util
    from pathlib import Path

    from discover.cli import build_config, parser

    path = Path(__file__).resolve().parents[1] / "scripts" / "ablate.py"
    spec = importlib.util.spec_from_file_location("ablate", path)
    ablate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablate)
    args = argparse.Namespace(steps=6, groups=2, group_size=8, max_new_tokens=64,
                              set=["policy.temperature=1.0"])
    script = ablate.config("toy", 0, args, Path("/tmp/r"),
                           {"policy": {"backend": "null"}, "learner": {"method": "none"}})
    cli = build_config(parser().parse_args(
        ["run", "toy", "--steps", "6", "--seed", "0", "--run-dir", "/tmp/r", "--backend", "null",
         "--max-new-tokens", "64", "--set", "policy.temperature=1.0"]))
    assert script == cli


# --- an environment's recommended settings: a layer right above the defaults ---------------

def cli_config(*argv: str) -> Config:
    from discover.cli import build_config, parser

    return build_config(parser().parse_args(["run", *argv]))


def sampling(cfg: Config) -> tuple[float, int]:
    return cfg.policy.temperature, cfg.policy.max_new_tokens


def test_environment_defaults_sit_below_config_flags_and_set(tmp_path):
    default = Config().policy
    assert sampling(cli_config("toy")) == (default.temperature, default.max_new_tokens)
    assert sampling(cli_config("erdos")) == (1.0, 64)  # Erdős recommends them
    path = tmp_path / "c.toml"
    path.write_text("[policy]\ntemperature = 0.7\nmax_new_tokens = 100\n")
    assert sampling(cli_config("erdos", "--config", str(path))) == (0.7, 100)
    assert sampling(cli_config("erdos", "--config", str(path), "--max-new-tokens", "80")) == \
        (0.7, 80)
    assert sampling(cli_config("erdos", "--config", str(path), "--max-new-tokens", "80",
                               "--set", "policy.max_new_tokens=90",
                               "--set", "policy.temperature=0.5")) == (0.5, 90)


def test_a_resumed_run_keeps_the_values_it_saved(tmp_path):
    saved = cm.apply(Config(), {"run": {"env": "erdos", "run_dir": str(tmp_path)}})
    (tmp_path / "config.toml").write_text(cm.dumps(saved))  # a run from before: T = 0.4
    cfg = cli_config("erdos", "--run-dir", str(tmp_path), "--resume")
    assert sampling(cfg) == (saved.policy.temperature, saved.policy.max_new_tokens)


def test_discover_envs_shows_the_recommended_settings(capsys):
    from discover.cli import main

    assert main(["envs"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["erdos"].endswith("policy.temperature=1.0 policy.max_new_tokens=64 "
                                   "run.overlap=true learner.grad_checkpointing=false "
                                   "learner.prompt_grad=false learner.lr_scale=2.0 "
                                   "learner.probe_rows=0")
    assert lines["toy"].endswith(" -")


def test_the_plain_erdos_command_is_the_demo():
    """demo.sh's `discover run` resolves to the config of `discover run erdos --steps 6` and to
    the flags the demo passed before Erdős recommended them: same config and seed, so the same
    candidates."""
    import shlex
    from pathlib import Path

    script = (Path(__file__).resolve().parents[1] / "scripts" / "demo.sh").read_text()
    line = next(x for x in script.replace("\\\n", " ").splitlines() if "discover run" in x)
    demo = shlex.split(line.replace('"${STEPS:-6}"', "6").replace('"$RUN"', "/tmp/demo")
                       .replace('"$@"', ""))
    demo = demo[demo.index("run") + 1:]
    plain = cli_config("erdos", "--steps", "6", "--run-dir", "/tmp/demo")
    assert cli_config(*demo) == plain
    assert plain == cli_config("erdos", "--steps", "6", "--run-dir", "/tmp/demo",
                               "--max-new-tokens", "64", "--set", "policy.temperature=1.0")


def test_a_malformed_layer_is_named_with_environment_defaults_on():
    with pytest.raises(ConfigError, match=r"\[run\] must be a table"):
        cm.resolve([{"run": 5}], lambda env: {})
