#!/usr/bin/env bash
# The kernels of one forward + backward, maestro (libtorch-cpu) against PyTorch eager on the same
# libtorch, kernel by kernel (`maestro bench step --ops`, `torch_reference.py step --ops`, then
# `census-diff`), for the ViT-B/16 fine-tune step and the MAE pre-training step, bf16 and f32;
# then the fine-tune forward + backward's time and the process's peak memory (RSS) on both sides,
# and for BASELINE_BINARY (an older build) too when given. Needs a `tch` build (scripts/build-cuda
# --libtorch) with libtorch's lib/ on LD_LIBRARY_PATH, python with torch + timm, and MAE's
# models_mae.py folder.
#   bash benches/census_cpu.sh BINARY MAE_CHECKOUT [BASELINE_BINARY]
set -u
BIN=${1:?usage: census_cpu.sh BINARY MAE_CHECKOUT [BASELINE_BINARY]}
MAE=${2:?a folder with models_mae.py}
BASE=${3:-}
PY=${PYTHON:-python3}
TMP=$(mktemp -d)
echo "# $(date -u), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
$PY -c "import torch, timm; print('# torch', torch.__version__, 'threads', torch.get_num_threads(), 'timm', timm.__version__)"
echo "## census: batch 2 (fine-tune) and 4 (pre-training), one step after one warm-up"
$PY benches/torch_reference.py step --device cpu --batch 2 --steps 1 --warmup 1 --phase backward --ops \
    --variants bf16,f32 >"$TMP/torch.jsonl" 2>/dev/null
$PY benches/torch_reference.py step --device cpu --batch 4 --steps 1 --warmup 1 --phase backward --ops \
    --variants mae-bf16,mae-f32 --mae-repo "$MAE" >>"$TMP/torch.jsonl" 2>/dev/null
for p in bf16 f32; do
    "$BIN" bench step --device libtorch-cpu --batch 2 --steps 1 --warmup 1 --precision $p --only finetune \
        --phase backward --ops --json 2>/dev/null >"$TMP/ft-$p.json"
    $PY benches/torch_reference.py census-diff "$TMP/ft-$p.json" "$TMP/torch.jsonl"
    "$BIN" bench step --device libtorch-cpu --batch 4 --steps 1 --warmup 1 --precision $p --only pretrain \
        --mask-ratio 0.9 --decoder-depth 1 --phase backward --ops --json 2>/dev/null >"$TMP/pt-$p.json"
    $PY benches/torch_reference.py census-diff "$TMP/pt-$p.json" "$TMP/torch.jsonl"
done
echo "## fine-tune forward + backward, batch 16, 3 timed steps: time and peak RSS, alternating"
for round in 1 2; do
    for p in bf16 f32; do
        for b in "$BIN" ${BASE:+"$BASE"}; do
            echo "# round $round: $b $p"
            /usr/bin/time -f "peak RSS %M KB" "$b" bench step --device libtorch-cpu --batch 16 --steps 3 --warmup 1 \
                --precision $p --only finetune --phase backward 2>&1 | grep -v warm-up
        done
        echo "# round $round: timm $p"
        /usr/bin/time -f "peak RSS %M KB" $PY benches/torch_reference.py step --device cpu --batch 16 --steps 3 --warmup 1 \
            --phase backward --variants $p 2>&1 | grep -v gpuGetDeviceCount
    done
done
rm -rf "$TMP"
