#!/usr/bin/env bash
# What the fused attention + LayerNorm and maestro's AdamW buy on libtorch-cpu, beside PyTorch on
# the same CPU, in one run: maestro's fine-tune and pre-training steps, and the AdamW update
# alone, with and without --unfused, then timm and the official MAE model (eager, f32), the
# same phases. Rounds alternate, since a shared machine's speed drifts. Needs a `tch` build (scripts/build-cuda --libtorch) with
# libtorch's lib/ on LD_LIBRARY_PATH, python with torch + timm, and MAE's models_mae.py folder.
#   bash benches/fused_cpu.sh BINARY MAE_CHECKOUT [BATCH] [STEPS]
set -u
BIN=${1:?usage: fused_cpu.sh BINARY MAE_CHECKOUT [BATCH] [STEPS]}
MAE=${2:?a folder with models_mae.py}
BATCH=${3:-8}
STEPS=${4:-5}
PY=${PYTHON:-python3}
echo "# $(date -u), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), batch $BATCH, $STEPS timed steps"
$PY -c "import torch, timm; print('# torch', torch.__version__, 'threads', torch.get_num_threads(), 'timm', timm.__version__)"
for round in 1 2; do
    for phase in step optimizer; do
        for what in finetune pretrain; do
            for mode in fused unfused; do
                echo "## round $round: maestro $what $phase $mode"
                "$BIN" bench step --device libtorch-cpu --batch "$BATCH" --steps "$STEPS" --warmup 1 --precision f32 \
                    --only "$what" --phase $phase $([ $mode = unfused ] && echo --unfused) 2>&1 | grep -v warm-up
            done
        done
        echo "## round $round: PyTorch eager f32 (timm ViT-B/16, official MAE) $phase"
        $PY benches/torch_reference.py step --device cpu --batch "$BATCH" --steps "$STEPS" --warmup 1 --variants f32,mae-f32 \
            --mae-repo "$MAE" --phase $phase 2>&1
    done
done
