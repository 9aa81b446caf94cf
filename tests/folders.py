"""Small problem folders in OpenEvolve's and ShinkaEvolve's shapes, written by the tests (not
copied from either project): a function minimisation and a circle packing."""

from __future__ import annotations

from pathlib import Path

FM_INITIAL = '''"""Find the minimum of f(x, y) = (x - 1.5)**2 + (y + 0.5)**2 + 1."""
import math


# EVOLVE-BLOCK-START
def search():
    """Return the point (x, y) where f is smallest."""
    x, y = 0.0, 0.0
    return x, y
# EVOLVE-BLOCK-END


def run_search():
    return search()
'''

FM_EVALUATOR = '''import importlib.util
import math
import time

from openevolve.evaluation_result import EvaluationResult


def load(program_path):
    spec = importlib.util.spec_from_file_location("program", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluate(program_path):
    module = load(program_path)
    if getattr(module, "HANG", False):
        while True:  # an evaluator that never returns
            time.sleep(1)
    x, y = module.run_search()
    if getattr(module, "SCORE", None) is not None:  # what a broken evaluator might return
        return {"combined_score": module.SCORE}
    value = (x - 1.5) ** 2 + (y + 0.5) ** 2 + 1
    return EvaluationResult(metrics={"value": value, "combined_score": 1 / value},
                            artifacts={"point": f"x={x:.4f}, y={y:.4f}"})
'''

FM_CONFIG = '''prompt:
  system_message: "Improve search() so that it returns the point where f(x, y) = (x - 1.5)**2 +
    (y + 0.5)**2 + 1 is smallest. The score is 1 / f(x, y): 1 at the minimum."
evaluator:
  timeout: 20
  cascade_evaluation: false
  parallel_evaluations: 2
'''

PACK_INITIAL = '''"""Three circles in the unit square: maximise the sum of their radii."""
import numpy as np

# EVOLVE-BLOCK-START
CENTERS = [[0.25, 0.25], [0.75, 0.25], [0.5, 0.75]]
RADII = [0.2, 0.2, 0.2]
# EVOLVE-BLOCK-END


def run_packing():
    centers, radii = np.array(CENTERS, dtype=float), np.array(RADII, dtype=float)
    return centers, radii, float(radii.sum())
'''

PACK_EVALUATE = '''"""Evaluator for three circles in the unit square (ShinkaEvolve's shape)."""
import argparse

import numpy as np

from shinka.core import run_shinka_eval


def validate(run_output):
    centers, radii, reported = run_output
    centers, radii = np.asarray(centers, float), np.asarray(radii, float)
    if centers.shape != (3, 2) or radii.shape != (3,):
        return False, f"expected 3 centers and radii, got {centers.shape} and {radii.shape}"
    if np.any(radii < 0) or np.any(centers - radii[:, None] < 0) or \\
            np.any(centers + radii[:, None] > 1):
        return False, "a circle leaves the unit square"
    for i in range(3):
        for j in range(i + 1, 3):
            if np.linalg.norm(centers[i] - centers[j]) < radii[i] + radii[j] - 1e-12:
                return False, f"circles {i} and {j} overlap"
    return True, None


def aggregate(results):
    centers, radii, reported = results[0]
    return {"combined_score": float(np.sum(radii)), "public": {"radii": list(map(float, radii))}}


def main(program_path, results_dir):
    run_shinka_eval(program_path=program_path, results_dir=results_dir,
                    experiment_fn_name="run_packing", num_runs=1,
                    get_experiment_kwargs=lambda i: {}, validate_fn=validate,
                    aggregate_metrics_fn=aggregate)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--program_path", default="initial.py")
    p.add_argument("--results_dir", default="results")
    a = p.parse_args()
    main(a.program_path, a.results_dir)
'''

PACK_README = """# Three circles

Place three circles in the unit square, without overlap, so that the sum of their radii is as
large as possible. run_packing() returns (centers, radii, sum of radii).
"""


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def openevolve_folder(folder: Path) -> Path:
    return write(folder, {"initial_program.py": FM_INITIAL, "evaluator.py": FM_EVALUATOR,
                          "config.yaml": FM_CONFIG})


def shinka_folder(folder: Path) -> Path:
    return write(folder, {"initial.py": PACK_INITIAL, "evaluate.py": PACK_EVALUATE,
                          "README.md": PACK_README})
