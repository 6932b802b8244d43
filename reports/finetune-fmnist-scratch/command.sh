#!/usr/bin/env bash
# Fashion-MNIST from scratch with the demo's tiny ViT (7x7 patches): 85.29% top-1 (result.json).
# Run from the repository root with maestro built.
maestro finetune --study studies/demo.yaml \
  --set model.patch_size=7 --set finetune.epochs=10 --set finetune.warmup_epochs=1 \
  --set finetune.batch_size=128 --set finetune.mixup=0 --set finetune.cutmix=0 \
  --set finetune.aa=none --set finetune.reprob=0 --set 'finetune.crop_scale=[0.6, 1.0]' \
  --set finetune.drop_path=0 --set finetune.eval_crop_pct=1.0 \
  --blr 2e-3 --llrd 1.0 --out scratch-p7
