"""search.run's parts: a run given its environment does not load it again (the CLI loads it
once, for its header and the search)."""

from discover import cli, search
from discover.registry import load_environment


def test_a_run_given_its_environment_loads_none(tmp_path, monkeypatch):
    env = load_environment("toy")

    def refuse(*args, **kwargs):
        raise AssertionError("the environment was loaded again")

    monkeypatch.setattr(search, "load_environment", refuse)
    cfg = cli.build_config(cli.parser().parse_args(
        ["run", "toy", "--backend", "null", "--run-dir", str(tmp_path / "r")]))
    parts, stored = search.prepare_run(cfg, False, env)
    try:
        assert parts.env is env and stored == []
        assert (tmp_path / "r" / "config.toml").exists()
    finally:
        search.close_run(parts)


def test_the_cli_hands_its_environment_to_the_search(monkeypatch):
    loaded, given = [], []
    real = cli.load_environment
    monkeypatch.setattr(cli, "load_environment", lambda *a, **k: loaded.append(a) or real(*a, **k))
    monkeypatch.setattr(search, "run", lambda cfg, **kw: given.append(kw["env"]) or "RUN")
    assert cli.main(["run", "toy", "--backend", "null"]) == 0
    assert len(loaded) == 1 and given[0].name == "toy"


def test_a_plain_erdos_run_stores_the_values_it_resolved(tmp_path):
    from discover import config as cm

    cfg = cli.build_config(cli.parser().parse_args(
        ["run", "erdos", "--backend", "null", "--run-dir", str(tmp_path / "r")]))
    parts, _ = search.prepare_run(cfg, False, None)
    search.close_run(parts)
    saved = cm.load_toml(tmp_path / "r" / "config.toml")
    assert (saved["policy"]["temperature"], saved["policy"]["max_new_tokens"]) == (1.0, 64)
