"""Metrics sinks beside metrics.jsonl: TensorBoard and W&B are optional extras."""

import importlib.util

import pytest

from discover import cli
from discover.config import ConfigError
from discover.metrics_log import MetricsLog, check, flatten

STEP = {"step": 3, "version": 2, "total": 4, "valid": 3, "mean_reward": -0.5,
        "best_step_reward": None, "tokens": 120, "failures": {"crash": 1},
        "seconds": {"generate": 2.0, "score": 0.5, "learn": 1.0},
        "learner": {"beta": 4.0, "kl": 0.69, "loss": 0.1, "skipped": False}, "time": 1e9}


def test_flatten_keeps_numeric_leaves_by_path():
    flat = flatten(STEP)
    assert flat["seconds/generate"] == 2.0 and flat["learner/beta"] == 4.0
    assert flat["failures/crash"] == 1.0 and flat["learner/skipped"] == 0.0
    assert "step" not in flat and "time" not in flat and "best_step_reward" not in flat


@pytest.mark.parametrize("sink", ["tensorboard", "wandb"])
def test_a_missing_package_fails_at_start_naming_the_pip_command(sink, tmp_path, capsys):
    if importlib.util.find_spec(sink) is not None:
        pytest.skip(f"{sink} is installed here")
    with pytest.raises(ConfigError, match=rf"pip install 'discover\[{sink}\]'"):
        check(sink)
    run_dir = tmp_path / "run"
    rc = cli.main(["run", "toy", "--steps", "1", "--log", sink, "--run-dir", str(run_dir)])
    err = capsys.readouterr().err
    assert rc == 2 and f"pip install 'discover[{sink}]'" in err
    assert not run_dir.exists()  # nothing was created


def test_an_unknown_sink_is_refused(tmp_path, capsys):
    rc = cli.main(["run", "toy", "--set", "run.log=tensorbord", "--run-dir", str(tmp_path / "r")])
    assert rc == 2 and "run.log" in capsys.readouterr().err


def test_tensorboard_receives_each_step(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLog("tensorboard", tmp_path, {})
    for step in range(3):
        log.write(step, {**STEP, "step": step, "valid": step, "best_score": 10.0 + step})
    log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(s.step, s.value) for s in events.Scalars("best_score")] == [
        (0, 10.0), (1, 11.0), (2, 12.0)]
    assert [s.value for s in events.Scalars("valid_rate")] == [0.0, 0.25, 0.5]
    assert events.Scalars("learner/beta")[0].value == 4.0


def test_wandb_receives_each_step_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")  # no account, no network
    monkeypatch.setenv("WANDB_SILENT", "true")
    log = MetricsLog("wandb", tmp_path, {"run": {"env": "toy"}})
    for step in range(3):
        log.write(step, {**STEP, "step": step, "best_score": 10.0 + step})
    log.close()
    (record,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    data = record.read_bytes()
    assert b"best_score" in data and b"learner/beta" in data
