#!/usr/bin/env bash
# One device call that measures maestro and PyTorch on the same GPU, in the same session.
#   bash benches/gpu/run.sh BINARY [MAE_CHECKOUT]
# BINARY: maestro built with the `cuda` feature; MAE_CHECKOUT: a facebookresearch/mae checkout
# (for the official pre-training model). Writes everything to $OUT (or benches/results/) as
# gpu-<date>.txt: the card, maestro's steps (fine-tune ViT-B/16 and MAE pre-training, batch 128),
# timm's (eager bf16 autocast, f32, torch.compile) and the official MAE's, the pipeline per core.
# Each part has its own time limit so one that hangs cannot eat the others' time.
set -u
BIN=${1:?usage: run.sh MAESTRO_BINARY[.xz] [MAE_CHECKOUT]}
if [[ "$BIN" == *.xz ]]; then # scripts/build-cuda's compressed copy (it fits the 64 MiB carry)
    xz -d -c "$BIN" >/tmp/maestro-cuda && chmod +x /tmp/maestro-cuda && BIN=/tmp/maestro-cuda
fi
MAE=${2:-}
OUTDIR=${OUT:-benches/results}
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu-$(date -u +%Y%m%d-%H%M).txt"
export CUDA_PATH=${CUDA_PATH:-/usr/local/cuda}
export LD_LIBRARY_PATH="$CUDA_PATH/lib64:${LD_LIBRARY_PATH:-}"
# Autotune results persist here so a later call (and every trial) skips the tuning.
export CUBECL_CACHE_DIR=${CUBECL_CACHE_DIR:-$OUTDIR/cubecl-cache}
run() { # limit_s label command...
    local limit=$1 label=$2; shift 2
    echo "=== $label: $*" | tee -a "$LOG"
    local t0=$(date +%s.%N)
    timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$LOG"
    echo "=== $label: exit ${PIPESTATUS[0]} after $(echo "$(date +%s.%N) - $t0" | bc) s" | tee -a "$LOG"
}
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    python -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)"
} 2>&1 | tee -a "$LOG"
run 30 doctor "$BIN" doctor
# H100 SXM dense peaks: 989 TFLOP/s bf16; 67 TFLOP/s f32 without tensor cores (maestro's f32
# path does not use TF32).
run 200 maestro-steps-bf16 "$BIN" bench step --device cuda:0 --batch 128 --steps 10 --warmup 3 --precision bf16 --peak-tflops 989 --json
run 120 maestro-steps-f32 "$BIN" bench step --device cuda:0 --batch 128 --steps 10 --warmup 3 --peak-tflops 67 --json
run 200 torch-steps python benches/torch_reference.py step --device cuda --batch 128 --compile ${MAE:+--mae-repo "$MAE"}
python benches/torch_reference.py make-jpegs /tmp/maestro-jpegs --count 200 >/dev/null 2>&1
run 60 maestro-pipeline "$BIN" bench pipeline /tmp/maestro-jpegs --json
run 60 torch-pipeline python benches/torch_reference.py pipeline /tmp/maestro-jpegs
echo "log: $LOG"
