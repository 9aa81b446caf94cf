#!/usr/bin/env bash
# The README's demo: set up, then a short Erdős search with the embedded model, then the best.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
RUN=${RUN:-runs/demo-$(date +%Y%m%d-%H%M%S)}
.venv/bin/discover run erdos --steps "${STEPS:-5}" --run-dir "$RUN" "$@"
.venv/bin/discover best "$RUN"
