"""OpenEvolve's entry (written by `discover export`): runs ShinkaEvolve's evaluate.py."""
import json
import os
import tempfile

import evaluate as shinka_evaluate


def evaluate(program_path):
    with tempfile.TemporaryDirectory() as results_dir:
        shinka_evaluate.main(program_path, results_dir)
        with open(os.path.join(results_dir, "metrics.json")) as f:
            metrics = json.load(f)
        correct_file = os.path.join(results_dir, "correct.json")
        if os.path.exists(correct_file):
            with open(correct_file) as f:
                correct = json.load(f)
            if not correct.get("correct", False):
                raise ValueError(correct.get("error") or "not correct")
    return metrics
