"""ShinkaEvolve's entry (written by `discover export`): runs OpenEvolve's evaluator.py."""
import argparse
import json
import os

import evaluator


def main(program_path, results_dir):
    result = evaluator.evaluate(program_path)
    metrics = dict(getattr(result, "metrics", result))
    os.makedirs(results_dir, exist_ok=True)
    with open(os.path.join(results_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, default=repr)
    with open(os.path.join(results_dir, "correct.json"), "w") as f:
        json.dump({"correct": "combined_score" in metrics, "error": None}, f)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--program_path", default="initial.py")
    p.add_argument("--results_dir", default="results")
    a = p.parse_args()
    main(a.program_path, a.results_dir)
