#!/usr/bin/env bash
# The README's demo: set up, then a short Erdős search with the embedded model, then the best.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
RUN=${RUN:-runs/demo-$(date +%Y%m%d-%H%M%S)}
# 2 x 8 completions a step (the default), learning on (the default); the answer is the starter's
# editable block, short: 160 new tokens hold it; each program does Erdős's default work
# (env.iterations: about 0.8 s on an idle core), which keeps scoring small.
.venv/bin/discover run erdos --steps "${STEPS:-3}" --max-new-tokens 160 \
    --run-dir "$RUN" "$@"
.venv/bin/discover best "$RUN"
