"""ShinkaEvolve's run_shinka_eval, sequential: run the program's experiment function num_runs
times, validate each result, aggregate the metrics, and write metrics.json and correct.json to
results_dir. Returns (metrics, correct, first error). Parallel workers, early stopping and
plotting are accepted and ignored (the sandbox gives one evaluation its own limits)."""

import importlib.util
import json
import math
import os
import time


def _load(path):
    spec = importlib.util.spec_from_file_location("program", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _save(results_dir, metrics, correct, error):
    os.makedirs(results_dir, exist_ok=True)
    with open(os.path.join(results_dir, "correct.json"), "w") as f:
        json.dump({"correct": correct, "error": error}, f, indent=4)
    with open(os.path.join(results_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=4, default=repr)


def run_shinka_eval(program_path, results_dir, experiment_fn_name, num_runs,
                    get_experiment_kwargs=None, aggregate_metrics_fn=None, validate_fn=None,
                    plotting_fn=None, default_metrics_on_error=None, **_ignored):
    correct, error, errors, results, times = True, None, [], [], []
    n_valid = n_invalid = 0
    try:
        fn = getattr(_load(program_path), experiment_fn_name, None)
        if fn is None:
            raise AttributeError(f"Experiment function '{experiment_fn_name}' not found in "
                                 f"{program_path}")
        for i in range(num_runs):
            kwargs = get_experiment_kwargs(i) if get_experiment_kwargs else {"seed": i + 1}
            t0 = time.perf_counter()
            result = fn(**kwargs)
            times.append(time.perf_counter() - t0)
            results.append(result)
            if validate_fn:
                ok, msg = validate_fn(result)
                n_valid, n_invalid = n_valid + bool(ok), n_invalid + (not ok)
                if not ok:
                    correct = False
                    error = error or (f"Validation failed: {msg}" if msg else None)
                    if msg and msg not in errors:
                        errors.append(msg)
        metrics = (aggregate_metrics_fn(results) if aggregate_metrics_fn
                   else {"num_successful_runs": len(results)})
        metrics["execution_time_mean"] = sum(times) / len(times) if times else 0.0
        if validate_fn:
            metrics.update(num_valid_runs=n_valid, num_invalid_runs=n_invalid,
                           all_validation_errors=errors)
        score = metrics.get("combined_score")
        if isinstance(score, float) and not math.isfinite(score):
            correct, error = False, error or f"combined_score is {score}"
    except Exception as e:
        metrics = dict(default_metrics_on_error or {"combined_score": 0.0})
        correct, error = False, str(e)
    metrics.pop("extra_data", None)
    _save(results_dir, metrics, correct, error)
    return metrics, correct, error
