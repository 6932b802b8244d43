#!/usr/bin/env bash
# One device call that measures maestro and PyTorch on the same GPU, in the same session.
#   bash benches/gpu/run.sh BINARY[.xz] [MAE_CHECKOUT]
# BINARY: maestro built by scripts/build-cuda (with --libtorch for the `libtorch-cuda` device);
# MAE_CHECKOUT: a folder holding facebookresearch/mae's models_mae.py and util/ (the official
# pre-training model). Writes $OUT (or benches/results/) gpu-<date>.txt with everything printed,
# gpu-<date>-mem.csv (the card's memory every 100 ms), gpu-<date>-summary.md (the ratios, from
# `torch_reference.py summary`, also at the end of the log) and the cubecl logs.
#
# Order: what the ratios need first (PyTorch's steps, maestro's on libtorch), then the largest
# batch, the input pipeline, and burn's own CUDA backend (cubecl) last, since its cold start is
# the unknown. Every part runs under its own time limit and the whole under BUDGET_S, so one that
# hangs cannot eat the others' time. For each part the log gives its exit code, its wall time and
# the card's peak memory over the part (nvidia-smi, minus the idle reading), the same outside
# reading for maestro and PyTorch.
#
# PARTS picks what runs (default: check steps census batch breakdown train trial compile study,
# about 460 s on an H200; the limits below are ceilings, and BUDGET_S cuts the last ones first;
# add pipeline and cubecl for the input pipeline and burn's own CUDA backend). `check` compares
# the fused attention, LayerNorm and linear layer with burn's composition on the card (values and
# gradients), and maestro's AdamW (PyTorch's fused kernel) with burn's over five steps; `steps`
# times each maestro step fused and, for bf16, --unfused too; `census` counts the kernels one
# bf16 forward + backward launches on each side, kernel by kernel, and times them on the GPU
# (how long the GPU was busy and idle, by kind of kernel); `batch` finds the largest fine-tune
# batch within an 80 GB H100's memory, on whichever card; `breakdown` times forward +
# backward and the AdamW update alone on both sides, to see where a step goes; `train` trains on
# Fashion-MNIST (FMNIST=folder) in bf16 and f32 on the card; `trial` fine-tunes ViT-B/16 on JPEG
# files as a study's trial does; `compile` times timm under
# torch.compile; `study` runs the demo study end to end on the card.
set -u
PARTS=" ${PARTS:-check steps census batch breakdown train trial compile study} "
BIN=${1:?usage: run.sh MAESTRO_BINARY[.xz] [MAE_CHECKOUT]}
if [[ "$BIN" == *.xz ]]; then # scripts/build-cuda's compressed copy (it fits the 64 MiB carry)
    xz -d -c "$BIN" >/tmp/maestro-cuda && chmod +x /tmp/maestro-cuda && BIN=/tmp/maestro-cuda
fi
BIN=$(readlink -f "$BIN")
MAE=${2:+$(readlink -f "$2")}
OUTDIR=$(mkdir -p "${OUT:-benches/results}" && cd "${OUT:-benches/results}" && pwd)
STAMP=$(date -u +%Y%m%d-%H%M)
LOG="$OUTDIR/gpu-$STAMP.txt"
MEM="$OUTDIR/gpu-$STAMP-mem.csv"
BUDGET_S=${BUDGET_S:-540}
START=$SECONDS
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export CUDA_PATH=${CUDA_PATH:-/usr/local/cuda}
# libtorch: the same PyTorch the reference runs, so maestro's libtorch-cuda uses its kernels.
TORCH_LIB=$($PY -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)
export LD_LIBRARY_PATH="${TORCH_LIB:+$TORCH_LIB:}$CUDA_PATH/lib64:${LD_LIBRARY_PATH:-}"

log() { echo "$*" | tee -a "$LOG"; }
nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader,nounits -lms 100 >"$MEM" 2>/dev/null &
SMI=$!
trap 'kill $SMI 2>/dev/null' EXIT
sleep 1
IDLE_MIB=$(tail -n 1 "$MEM" | cut -d, -f2 | tr -d ' ')
peak_since() { # line number in $MEM -> peak MiB since then, minus idle
    tail -n +"$1" "$MEM" | cut -d, -f2 | sort -n | tail -n 1 | awk -v idle="${IDLE_MIB:-0}" '{print $1 - idle}'
}
run() { # limit_s label command...
    local limit=$1 label=$2; shift 2
    local left=$((BUDGET_S - (SECONDS - START)))
    ((left < limit)) && limit=$left
    if ((limit < 5)); then log "=== $label: skipped, the budget is spent"; return 99; fi
    log "=== $label (limit ${limit} s): $*"
    local from=$(($(wc -l <"$MEM") + 1)) t0=$EPOCHREALTIME
    timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    log "=== $label: exit $rc after $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s, peak GPU memory $(peak_since "$from") MiB over idle ($IDLE_MIB MiB)"
    return "$rc"
}
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv
    $PY -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.version.cuda)"
    echo "libtorch for maestro: $TORCH_LIB"
    nproc
} 2>&1 | tee -a "$LOG"
run 30 doctor "$BIN" doctor

part() { [[ "$PARTS" == *" $1 "* ]]; }

# --- 0. The fused operations agree with burn's composition on this card ----------------------
part check && run 60 maestro-fused-check "$BIN" bench fused --device libtorch-cuda:0 --batch 32

# --- 1. PyTorch: timm ViT-B/16 fine-tune step, official MAE pre-training step (batch 128) ---
part steps && for v in bf16 f32 mae-bf16 mae-f32; do
    run 40 "torch-$v" $PY benches/torch_reference.py step --device cuda --batch 128 --variants $v ${MAE:+--mae-repo "$MAE"}
done

# --- 2. maestro on libtorch-cuda: the same steps through burn's LibTorch backend ---------------
# H100 SXM dense peaks: 989 TFLOP/s bf16; 494 TF32. The f32 steps use TF32 on both sides
# (torch_reference.py sets allow_tf32; libtorch reads TORCH_ALLOW_TF32_CUBLAS_OVERRIDE).
part steps && for p in bf16 f32; do
    peak=989; [ $p = f32 ] && peak=494
    for what in finetune pretrain; do
        for mode in fused unfused; do
            [ $mode = unfused ] && [ $p = f32 ] && continue
            run 60 "maestro-libtorch-$what-$p-$mode" env TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 "$BIN" bench step --device libtorch-cuda:0 \
                --batch 128 --steps 10 --warmup 3 --precision $p --only $what --peak-tflops $peak --json \
                $([ $mode = unfused ] && echo --unfused)
        done
    done
done

# --- The kernels of one bf16 forward + backward on each side (batch 128), side by side ---------
# Counted (--ops: launches and elements read) and timed on the GPU by PyTorch's profiler
# (--kernel-times: CUPTI), each in one more step after the timed ones.
if part census; then
    run 75 torch-census sh -c '"$0" benches/torch_reference.py step --device cuda --batch 128 --variants bf16,mae-bf16 \
        --phase backward --steps 2 --warmup 2 --ops --kernel-times ${1:+--mae-repo "$1"} >"$2"; tail -c 300 "$2"' "$PY" "$MAE" "$OUTDIR/census-torch.jsonl"
    run 75 maestro-census sh -c '"$0" bench step --device libtorch-cuda:0 --batch 128 --steps 2 --warmup 2 --precision bf16 \
        --phase backward --ops --kernel-times --json >"$1"; tail -c 300 "$1"' "$BIN" "$OUTDIR/census-maestro.json"
    run 10 census-diff $PY benches/torch_reference.py census-diff "$OUTDIR/census-maestro.json" "$OUTDIR/census-torch.jsonl"
    run 10 time-diff $PY benches/torch_reference.py time-diff "$OUTDIR/census-maestro.json" "$OUTDIR/census-torch.jsonl"
fi

# --- 3. The largest ViT-B/16 fine-tune batch that fits on an 80 GB H100 (bf16, libtorch-cuda) --
# On a larger card (an H200) all but an 80 GB H100's 81559 MiB is first held by one allocation
# (--hold-mib), so the scan is offered what an H100 offers; the CUDA context sits outside both.
# The peak memory logged for these parts includes what is held.
H100_MIB=81559
TOTAL_MIB=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -n 1 | tr -d ' ')
[[ "$TOTAL_MIB" =~ ^[0-9]+$ ]] || TOTAL_MIB=0
HOLD_MIB=$((${TOTAL_MIB:-0} > H100_MIB ? TOTAL_MIB - H100_MIB : 0))
part batch && log "largest batch within an H100's $H100_MIB MiB: this card has $TOTAL_MIB MiB (0: unknown), $HOLD_MIB MiB held" \
    && for b in 512 768 896 1024 1152; do
    run 40 "maestro-libtorch-batch-$b-in-${H100_MIB}MiB" "$BIN" bench step --device libtorch-cuda:0 --batch $b --steps 1 \
        --warmup 1 --precision bf16 --only finetune --hold-mib $HOLD_MIB --json || break
done

# --- 4. The input pipeline per core, on the same JPEG files -----------------------------------
if part pipeline; then
    $PY benches/torch_reference.py make-jpegs /tmp/maestro-jpegs --count 200 >/dev/null 2>&1
    run 60 maestro-pipeline "$BIN" bench pipeline /tmp/maestro-jpegs --json
    run 60 torch-pipeline $PY benches/torch_reference.py pipeline /tmp/maestro-jpegs
fi

# --- Where a step's time goes: forward + backward, the AdamW update (bf16, batch 128) --------
# (--phase forward times the inference forward alone.)
if part breakdown; then
    for ph in backward optimizer; do
        run 40 "torch-finetune-bf16-$ph" $PY benches/torch_reference.py step --device cuda --batch 128 --variants bf16 --phase $ph
        for mode in fused unfused; do
            run 40 "maestro-libtorch-finetune-bf16-$ph-$mode" "$BIN" bench step --device libtorch-cuda:0 --batch 128 --steps 10 \
                --warmup 3 --precision bf16 --only finetune --phase $ph --json $([ $mode = unfused ] && echo --unfused)
        done
    done
    for ph in backward optimizer; do
        run 40 "torch-pretrain-bf16-$ph" $PY benches/torch_reference.py step --device cuda --batch 128 --variants mae-bf16 \
            --phase $ph ${MAE:+--mae-repo "$MAE"}
        for mode in fused unfused; do
            run 40 "maestro-libtorch-pretrain-bf16-$ph-$mode" "$BIN" bench step --device libtorch-cuda:0 --batch 128 --steps 10 \
                --warmup 3 --precision bf16 --only pretrain --phase $ph --json $([ $mode = unfused ] && echo --unfused)
        done
    done
    # A batch of 8 leaves the GPU mostly idle: the step time is then the host's cost of issuing it.
    run 40 torch-finetune-bf16-batch8 $PY benches/torch_reference.py step --device cuda --batch 8 --variants bf16
    run 40 maestro-libtorch-finetune-bf16-batch8 "$BIN" bench step --device libtorch-cuda:0 --batch 8 --steps 10 --warmup 3 \
        --precision bf16 --only finetune --json
fi

# --- Real training on the card: Fashion-MNIST, the demo study's model, bf16 against f32 --------
# The same seeded fine-tune (10 epochs of the 10% proxy, from scratch) and MAE pre-training (the
# demo's efficient setup, 2 epochs) in both precisions: loss per epoch and accuracy, data loaded
# and augmented by the trainer as in a study. FMNIST: a Fashion-MNIST folder (the four .gz files).
FM=$(readlink -f "${FMNIST:-/usr/share/datasets/fashion-mnist}") # a plain path: it goes into sed and YAML
TRAIN_DEVICE=${TRAIN_DEVICE:-libtorch-cuda:0}
study_variant() { # precision devices -> a copy of the demo study that reads $FM, on these devices
    local f=/tmp/maestro-demo-$1.yaml
    [ -n "$FM" ] && [ -d "$FM" ] || { log "no Fashion-MNIST folder at '${FMNIST:-/usr/share/datasets/fashion-mnist}' (set FMNIST)"; return 1; }
    sed -e "s#^dataset: { kind: fashion-mnist }#dataset: { kind: fashion-mnist, root: $FM }#" \
        -e "s#pretrain: { epochs: 3,#pretrain: { precision: $1, epochs: 3,#" \
        -e "s#^execution: { devices: \[cpu, cpu\] }#execution: { devices: [$2] }#" studies/demo.yaml >"$f"
    grep -q "root: $FM" "$f" && grep -q "precision: $1" "$f" && grep -q "devices: \[$2\]" "$f" \
        || { log "studies/demo.yaml no longer has the lines run.sh rewrites"; return 1; }
    echo "$f"
}
if part train; then
    rm -rf "$OUTDIR"/fmnist-* # a second call on a warm machine must not resume the first's runs
    for p in bf16 f32; do
        S=$(study_variant $p "$TRAIN_DEVICE") || break
        run 60 "maestro-fmnist-finetune-$p" "$BIN" finetune --study "$S" --manifest proxies/fmnist-10pct.manifest \
            --set finetune.precision=$p --set finetune.epochs=10 --set finetune.warmup_epochs=1 --device "$TRAIN_DEVICE" \
            --seed 0 --out "$OUTDIR/fmnist-finetune-$p"
        run 60 "maestro-fmnist-pretrain-$p" "$BIN" pretrain --study "$S" --setup efficient --epochs 2 --device "$TRAIN_DEVICE" \
            --seed 0 --out "$OUTDIR/fmnist-pretrain-$p"
    done
    rm -rf "$OUTDIR"/fmnist-*/*.safetensors "$OUTDIR"/fmnist-*/checkpoint
fi

# --- A real ViT-B/16 trial on JPEG files: the input pipeline on all cores + upload + step ------
# MAE's fine-tune recipe (RandAugment, mixup/cutmix, erasing), batch 128, bf16: the images/s of a
# trial as a study runs it, against `bench step` above (fixed batch already on the card).
if part trial; then
    J=/tmp/maestro-jpeg-folder
    rm -rf "$J" /tmp/maestro-jpeg-trial-* # /tmp outlives a call on a warm machine: no resumed runs
    $PY benches/torch_reference.py make-jpegs "$J/src" --count 256 >/dev/null 2>&1
    for c in a b c d; do for k in 1 2 3; do mkdir -p "$J/train/$c" && cp -al "$J/src" "$J/train/$c/r$k"; done; done
    for c in a b; do mkdir -p "$J/val/$c" && cp -al "$J/src" "$J/val/$c/r1"; done
    run 40 maestro-pipeline-all-threads "$BIN" bench pipeline "$J/src" --batch 128 --json
    run 30 maestro-libtorch-finetune-bf16-step "$BIN" bench step --device libtorch-cuda:0 --batch 128 --steps 10 --warmup 3 \
        --precision bf16 --only finetune --json
    # MAESTRO_PAGEABLE_UPLOAD=1: burn's own upload (pageable memory, waits for the GPU), to compare.
    for upload in pinned pageable; do
        run 90 "maestro-jpeg-trial-vitb-bf16-$upload" env MAESTRO_PAGEABLE_UPLOAD=$([ $upload = pageable ] && echo 1 || echo 0) \
            "$BIN" finetune --dataset "$J" --model vit_base_patch16 --set finetune.batch_size=128 --set finetune.epochs=3 \
            --set finetune.warmup_epochs=0 --device libtorch-cuda:0 --seed 0 --out "/tmp/maestro-jpeg-trial-$upload"
        cp "/tmp/maestro-jpeg-trial-$upload/result.json" "$OUTDIR/jpeg-trial-$upload-result.json" 2>/dev/null
    done
fi

# --- timm under torch.compile (bf16): its cold start is long, so it comes late ---------------
part compile && run 150 torch-bf16-compile $PY benches/torch_reference.py step --device cuda --batch 128 --variants bf16-compile

# --- The demo study end to end on the card: 4 trials at a time, precision auto (bf16) ---------
if part study; then
    devs="$TRAIN_DEVICE, $TRAIN_DEVICE, $TRAIN_DEVICE, $TRAIN_DEVICE"
    rm -rf /tmp/maestro-demo-run
    S=$(study_variant auto "$devs") && run 240 maestro-demo-study "$BIN" run "$S" --run-dir /tmp/maestro-demo-run \
        --report-dir "$OUTDIR/demo-study" --quiet
    [ -f /tmp/maestro-demo-run/journal.jsonl ] && cp /tmp/maestro-demo-run/journal.jsonl "$OUTDIR/demo-study/" 2>/dev/null
fi

# --- 5. burn's own CUDA backend (cubecl): cold start, autotune, then the ViT-B step -----------
# The autotune and compile logs and the autotune database go to $OUT, so a later call can start warm.
# The device tool returns a handful of files: the runs' folders travel as one archive.
pack() {
    local dirs=$(cd "$OUTDIR" && ls -d fmnist-* demo-study jpeg-trial-* census-* 2>/dev/null)
    [ -n "$dirs" ] && tar -C "$OUTDIR" -czf "$OUTDIR/runs-$STAMP.tar.gz" $dirs && (cd "$OUTDIR" && rm -rf $dirs)
}
# The ratios, read back from this log (also in gpu-<date>-summary.md).
summarize() {
    $PY benches/torch_reference.py summary "$LOG" >"$OUTDIR/gpu-$STAMP-summary.md" 2>&1
    log "=== summary"
    tee -a "$LOG" <"$OUTDIR/gpu-$STAMP-summary.md"
}
part cubecl || { pack; summarize; log "log: $LOG ($((SECONDS - START)) s)"; exit 0; }
CUBE=/tmp/maestro-cubecl && mkdir -p "$CUBE"
cat >"$CUBE/cubecl.toml" <<EOF
[autotune]
level = "minimal"
[autotune.logger]
level = "minimal"
file = "$OUTDIR/cubecl-autotune.log"
[compilation.logger]
level = "basic"
file = "$OUTDIR/cubecl-compile.log"
[environment]
path = { directory = "$OUTDIR/cubecl-env" }
EOF
cd "$CUBE" || exit 1
run 90 maestro-cubecl-tiny-bf16 "$BIN" bench step --device cuda:0 --model vit_tiny_patch16 --batch 8 --steps 2 --warmup 1 \
    --precision bf16 --only finetune --json
log "cubecl kernels compiled so far: $(grep -c . "$OUTDIR/cubecl-compile.log" 2>/dev/null)"
run 600 maestro-cubecl-finetune-bf16 "$BIN" bench step --device cuda:0 --batch 128 --steps 5 --warmup 2 \
    --precision bf16 --only finetune --peak-tflops 989 --json
log "cubecl kernels compiled in all: $(grep -c . "$OUTDIR/cubecl-compile.log" 2>/dev/null)"
cd - >/dev/null || true
[ -d "$OUTDIR/cubecl-env" ] && tar -C "$OUTDIR" -cJf "$OUTDIR/cubecl-env.tar.xz" cubecl-env && rm -rf "$OUTDIR/cubecl-env"
for f in "$OUTDIR"/cubecl-*.log; do [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 4000000 ] && xz -f "$f"; done
pack
summarize
log "log: $LOG ($(((SECONDS - START))) s)"
