#!/usr/bin/env bash
# The README's demo: set up, then a short Erdős search with the embedded model, then the best.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
RUN=${RUN:-runs/demo-$(date +%Y%m%d-%H%M%S)}
# 6 steps of 2 x 8 completions (the default), learning on (the default). Erdős's editable block
# holds its two knobs (K, STEP): the answer is that block, short, so Erdős recommends 64 new
# tokens and the method's temperature 1.0 (`discover envs`), which keep about half valid while
# the model changes a knob in 0-2 of each 16 (at 0.4 it copies the block; docs/benchmarks.md);
# each program does Erdős's work (env.iterations: about 0.8 s on an idle core), which keeps
# scoring small. Erdős also recommends the cheap learner (the update beside the next step's
# sampling, the prompt without gradient at twice the rate): a learning step about 1.25x a step
# without one (docs/benchmarks.md, "The cheap learner").
.venv/bin/discover run erdos --steps "${STEPS:-6}" --run-dir "$RUN" "$@"
.venv/bin/discover best "$RUN"
