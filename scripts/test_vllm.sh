#!/usr/bin/env bash
# The vLLM stage: set up .venv-vllm (scripts/setup_vllm.sh, idempotent), then run the tests that
# need a real engine (tests/test_vllm.py: the engine in a Ray actor, seeds, log-probs against
# transformers, the prefill, LoRA hot-loading, a 3-step learning run killed and resumed, and
# `discover run --backend openai` against vLLM's OpenAI-compatible server).
# vLLM missing there is a failure (DISCOVER_REQUIRE_VLLM), as is pytest's exit code 5.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_vllm.sh || { echo "vLLM set-up failed"; exit 1; }
export DISCOVER_REQUIRE_VLLM=1
.venv-vllm/bin/python -m pytest -q -p no:cacheprovider tests/test_vllm.py "$@"
rc=$?
if [ "$rc" -eq 5 ]; then echo "pytest collected no vLLM tests: failing"; exit 1; fi
exit "$rc"
