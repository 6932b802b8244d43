#!/usr/bin/env bash
# Efficient MAE pre-training of the demo's tiny ViT (4x4 patches) on Fashion-MNIST's training
# split, then the same fine-tune on the fmnist-10pct proxy from it and from scratch.
set -u
R="$(cd "$(dirname "$0")/../.." && pwd)"
M="cargo run --quiet --manifest-path $R/Cargo.toml --bin maestro --"
S=$R/studies/demo.yaml
P=$R/proxies/fmnist-10pct.manifest
mkdir -p "${OUT:-/tmp/maestro-pretrain-fmnist}" && cd "${OUT:-/tmp/maestro-pretrain-fmnist}"
rm -rf pre ft-pre ft-scratch
t0=$(date +%s)
$M pretrain --study $S --set model.patch_size=4 --preset efficient --epochs 8 --warmup 1 --batch-size 256 \
  --decoder-dim 64 --decoder-heads 4 --out pre --quiet
echo "pretrain: $(( $(date +%s) - t0 )) s"
FT="--study $S --set model.patch_size=4 --set finetune.epochs=5 --set finetune.warmup_epochs=1 --manifest $P --llrd 0.75 --quiet"
t0=$(date +%s); $M finetune $FT --checkpoint pre/mae.safetensors --out ft-pre; echo "finetune from pre-training: $(( $(date +%s) - t0 )) s"
t0=$(date +%s); $M finetune $FT --out ft-scratch; echo "finetune from scratch: $(( $(date +%s) - t0 )) s"
