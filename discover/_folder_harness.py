"""Runs a problem folder's evaluator on one program in the sandbox (discover/problem_folder.py).

Not imported by discover: it is copied into the sandbox beside a fresh copy of the folder and run
there with the folder's packages and the standard library only. It reads _discover/call.json
(deleted once read), calls the evaluator as its own tool would (OpenEvolve: `evaluate(path)` or
the cascade `evaluate_stage1..3(path)`; ShinkaEvolve: `main(path, results_dir)`, then its
metrics.json and correct.json), and writes _discover/result.json:
{"token", "metrics", "artifacts", "stages", "error", "invalid"}.
"""

import importlib.util
import json
import os
import sys
import traceback

CALL, RESULT = "_discover/call.json", "_discover/result.json"


class Invalid(Exception):
    """The evaluator ran and said the program is not correct (ShinkaEvolve's correct.json)."""


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def split(result, what):
    """(metrics, artifacts) of a dict or an EvaluationResult-like object."""
    if isinstance(result, dict):
        return dict(result), {}
    metrics = getattr(result, "metrics", None)
    if isinstance(metrics, dict):
        return dict(metrics), dict(getattr(result, "artifacts", None) or {})
    raise TypeError(f"{what} returned {type(result).__name__}, not a dict of metrics or an "
                    "EvaluationResult")


def passes(metrics, threshold):
    """OpenEvolve's rule: combined_score when there is one, else the mean of numeric metrics."""
    if number(metrics.get("combined_score")):
        return float(metrics["combined_score"]) >= threshold
    xs = [float(v) for k, v in metrics.items() if k != "error" and number(v)]
    return bool(xs) and sum(xs) / len(xs) >= threshold


def openevolve(call, program):
    module = load(call["evaluator"], "evaluator")
    stages = [getattr(module, f"evaluate_stage{k}", None) for k in (1, 2, 3)]
    if not (call["cascade"] and stages[0]):
        if not callable(getattr(module, "evaluate", None)):
            raise AttributeError(f"{call['evaluator']} defines no evaluate(program_path)")
        metrics, artifacts = split(module.evaluate(program), "evaluate()")
        return metrics, artifacts, ["evaluate"]
    metrics, artifacts, ran = {}, {}, []
    for k, stage in enumerate(stages):
        if stage is None:
            break
        m, a = split(stage(program), f"evaluate_stage{k + 1}()")
        metrics.update(m)
        artifacts.update(a)
        ran.append(f"stage{k + 1}")
        if k >= len(call["thresholds"]) or not passes(metrics, call["thresholds"][k]):
            break  # the cascade stops at the first stage below its threshold
    return metrics, artifacts, ran


def shinka(call, program):
    results = os.path.abspath("_discover/results")
    os.makedirs(results, exist_ok=True)
    module = load(call["evaluator"], "evaluate")
    if not callable(getattr(module, "main", None)):
        raise AttributeError(f"{call['evaluator']} defines no main(program_path, results_dir)")
    module.main(program, results)
    try:
        with open(os.path.join(results, "metrics.json")) as f:
            metrics = json.load(f)
    except FileNotFoundError:
        raise RuntimeError(f"{call['evaluator']} wrote no metrics.json in its results_dir") \
            from None
    correct = {"correct": True}
    if os.path.exists(os.path.join(results, "correct.json")):
        with open(os.path.join(results, "correct.json")) as f:
            correct = json.load(f)
    if not correct.get("correct", False):
        raise Invalid(correct.get("error") or "correct.json says the program is not correct")
    feedback = {k: metrics[k] for k in ("text_feedback", "public") if k in metrics}
    return metrics, feedback, ["main"]


def main():
    with open(CALL) as f:
        call = json.load(f)
    os.remove(CALL)  # what the program could read of the call, it cannot read after this
    out = {"token": call.pop("token"), "metrics": None, "artifacts": {}, "stages": [],
           "error": None, "invalid": None}
    sys.path.insert(0, os.getcwd())  # the folder's own modules, and the openevolve/shinka shims
    program = os.path.abspath(call["program"])
    try:
        run = openevolve if call["shape"] == "openevolve" else shinka
        out["metrics"], out["artifacts"], out["stages"] = run(call, program)
    except Invalid as e:
        out["invalid"] = str(e)[-3000:]
    except BaseException as e:  # SystemExit too: the evaluator's failure, reported as such
        out["error"] = "".join(traceback.format_exception(type(e), e, e.__traceback__))[-3000:]
    with open(RESULT, "w") as f:
        json.dump(out, f, default=repr)


if __name__ == "__main__":
    main()
