"""The PyTorch side of maestro's benchmarks: the same steps and the same input pipeline measured
with timm / the official MAE model and PIL/torchvision, on the same machine in the same session,
so maestro's numbers can be given as ratios.

  python benches/torch_reference.py step --device cuda --batch 128 [--mae-repo PATH] [--compile]
                                         [--variants bf16,f32,bf16-compile,mae-bf16,...]
      timm's ViT-B/16 fine-tune step (AdamW, soft-target cross-entropy) in bf16 autocast and f32,
      and facebookresearch/mae's MaskedAutoencoderViT pre-training step (mask 0.9, 1-block
      decoder 512 wide) when --mae-repo points at a checkout: images/s, the first step's time
      and peak memory (the caching allocator's allocated and reserved). --variants picks some
      (one process each keeps an outside memory reading per variant). --phase forward|backward|
      optimizer times only the inference forward (loss read back), forward + backward, or the
      AdamW update on random gradients, as maestro bench --phase. --ops adds, per measurement, a
      census of the kernels one more step runs (as maestro bench step --ops: the rule is
      census() below, with the lists of csrc/torch_ops.cpp); on the CPU it also
      measures bf16 autocast, for that census, as it does when --variants names it.
      --kernel-times adds one more step under PyTorch's profiler, as maestro bench step
      --kernel-times: on CUDA each kernel's GPU time and how long the GPU was busy.
  python benches/torch_reference.py pipeline FILES_OR_DIRS... [--input-size 224] [--rounds 3]
      PIL decode + MAE's training transform (timm create_transform: RandomResizedCrop bicubic,
      flip, rand-m9-mstd0.5-inc1, erasing 0.25, normalise) on one core, per image.
  python benches/torch_reference.py census-diff MAESTRO_JSON TORCH_JSONL
      Side by side, per kernel, the censuses of `maestro bench step --ops --json` and of this
      script's `step --ops`, each maestro step paired with the PyTorch one of the same kind
      (fine-tune or pre-training) and precision.
  python benches/torch_reference.py time-diff MAESTRO_JSON TORCH_JSONL
      The same pairing for the profiles of `--kernel-times`: wall, busy and idle time of the
      step, GPU time by kind of kernel (matrix products, attention, LayerNorm, elementwise...),
      and the kernels whose time differs most.
  python benches/torch_reference.py make-jpegs OUT_DIR [--count 200]
      ImageNet-like JPEG files (500x375 and 375x500, quality 90) for the pipeline benchmarks.

Prints one JSON object per measurement.
"""
import argparse
import json
import os
import sys
import time


def files_of(paths):
    out = []
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in sorted(os.walk(p)):
                out += [os.path.join(root, n) for n in sorted(names) if n.lower().endswith((".jpg", ".jpeg", ".png", ".webp", ".bmp"))]
        else:
            out.append(p)
    return out


def pipeline(args):
    import random
    import torch
    from PIL import Image
    from timm.data import create_transform
    torch.set_num_threads(1)
    random.seed(0)
    torch.manual_seed(0)
    files = files_of(args.paths)
    t = create_transform(input_size=args.input_size, is_training=True, color_jitter=None,
                         auto_augment="rand-m9-mstd0.5-inc1", interpolation="bicubic",
                         re_prob=0.25, re_mode="pixel", re_count=1)
    n = len(files) * args.rounds
    t0 = time.perf_counter()
    for _ in range(args.rounds):
        for f in files:
            with open(f, "rb") as fh:
                Image.open(fh).convert("RGB")
    decode = n / (time.perf_counter() - t0)
    # timm's PosterizeIncreasing asks for 4 - int(4 * level) bits, 0 when the magnitude noise
    # lifts m9 to the cap of 10; Pillow 13 raises for 0 bits (older Pillow gave a black image).
    # Such images are counted, and the time they took stays in.
    errors = 0
    t0 = time.perf_counter()
    for _ in range(args.rounds):
        for f in files:
            with open(f, "rb") as fh:
                try:
                    t(Image.open(fh).convert("RGB"))
                except ValueError:
                    errors += 1
    full = n / (time.perf_counter() - t0)
    print(json.dumps({"what": "pipeline, PIL + timm create_transform (MAE's)", "files": len(files), "rounds": args.rounds,
                      "input_size": args.input_size, "decode_per_core": decode, "train_per_core": full,
                      "transform_errors": errors}))


def cpp_names(function):
    """The operation names `function()` in csrc/torch_ops.cpp lists: maestro's census rule, read
    from its one source so both censuses apply the same."""
    import re
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "csrc", "torch_ops.cpp")) as f:
        body = re.search(r"&" + function + r"\(\) \{(.*?)return names;", f.read(), re.S)
    if body is None:
        sys.exit(f"csrc/torch_ops.cpp has no {function}() list")
    return set(re.findall(r'"(aten::[^"]+)"', body.group(1)))


def census(run):
    """The kernels `run()` makes PyTorch run: `aten::` operations that are not in `not_kernels`
    and none of whose descendants is outside it, and the `products`, with how often each ran and the elements of its
    tensor inputs (0-d tensors and tensor lists count none), sorted by name. PyTorch's profiler
    sees the calling thread and the autograd engine's; maestro's census sees every thread (its
    steps run PyTorch on one)."""
    # Operations that launch no kernel of their own (views, allocations, and composites whose
    # work shows in the operations they run), and the matrix products, kernels even where they
    # run another (the CPU's addmm copies its bias first).
    not_kernels, products = cpp_names("not_kernels"), cpp_names("products")
    from torch.autograd.profiler import profile
    with profile(record_shapes=True) as prof:
        run()

    def runs_kernels(e):
        return any(c.name not in not_kernels or runs_kernels(c) for c in e.cpu_children)
    out = {}
    for e in prof.function_events:
        if not e.name.startswith("aten::") or e.name in not_kernels or (runs_kernels(e) and e.name not in products):
            continue
        elements = 0
        for shape in e.input_shapes or []:
            if isinstance(shape, list) and shape and all(isinstance(d, int) for d in shape):
                n = 1
                for d in shape:
                    n *= d
                elements += n
        k = out.setdefault(e.name, {"name": e.name, "count": 0, "input_elements": 0})
        k["count"] += 1
        k["input_elements"] += elements
    return [out[n] for n in sorted(out)]


PHASES = {"forward": "forward", "backward": "forward + backward", "step": "step", "optimizer": "AdamW update"}


def finish(phase, loss, opt):
    """The rest of a step after the loss, as far as `phase` goes (as maestro bench --phase; the
    forward phase runs under torch.no_grad, as maestro's runs the model without autodiff)."""
    if phase == "forward":
        loss.item()
        return
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if phase == "step":
        opt.step()


def random_grads(model):
    """For the optimizer phase: fresh random gradients before each timed update (as maestro's)."""
    import torch

    def prepare():
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 1e-3
    return prepare


def time_steps(step, steps, warmup, device, prepare=None):
    import torch
    first = None

    def ready():
        if prepare is not None:
            prepare()
            if device == "cuda":
                torch.cuda.synchronize()
    for _ in range(warmup):
        ready()
        t0 = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        first = first or time.perf_counter() - t0
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        ready()
        t0 = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = None
    if device == "cuda":
        peak = {"allocated": torch.cuda.max_memory_allocated() / 2**30, "reserved": torch.cuda.max_memory_reserved() / 2**30}
    times.sort()
    return (first or times[0], times), peak


def report(what, batch, timed, peak, extras=None):
    first, times = timed
    out = {"what": what, "batch": batch, "steps": len(times), "images_per_s": batch * len(times) / sum(times),
           "step_ms": 1e3 * times[len(times) // 2], "first_step_s": first, "peak_mem_gib": peak}
    out.update(extras or {})
    print(json.dumps(out), flush=True)


def kernel_times(run, device):
    """`run()` under PyTorch's profiler, as maestro bench step --kernel-times: on CUDA its
    activities alone (each kernel, copy and fill, timed on the GPU by CUPTI), on the CPU the
    calling thread's operations. The wall time of `run()`, the union of the events' intervals
    (busy), their sum, and per name the count and summed time, the longest first."""
    from torch.profiler import profile, ProfilerActivity
    from torch.autograd import DeviceType
    gpu = device == "cuda"
    with profile(activities=[ProfilerActivity.CUDA if gpu else ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        run()
        wall = time.perf_counter() - t0
    side = DeviceType.CUDA if gpu else DeviceType.CPU
    events = [(e.start_ns(), e.end_ns(), e.name()) for e in prof.profiler.kineto_results.events()
              if e.device_type() == side]
    busy, reach = 0, 0
    for start, end, _ in sorted(events):
        busy += max(0, end - max(start, reach))
        reach = max(reach, end)
    names = {}
    for start, end, name in events:
        k = names.setdefault(name, {"name": name, "count": 0, "total_us": 0.0})
        k["count"] += 1
        k["total_us"] += (end - start) / 1e3
    kernels = sorted(names.values(), key=lambda k: (-k["total_us"], k["name"]))
    return {"device": "gpu" if gpu else "cpu", "wall_ms": wall * 1e3, "busy_ms": busy / 1e6,
            "total_ms": sum(end - start for start, end, _ in events) / 1e6, "kernels": kernels}


def extras_of(args, step, device, prepare=None):
    """With --ops, the census of one more step (after the timed ones); with --kernel-times, the
    profile of one more."""
    import torch
    out = {}

    def run():
        step()
        if device == "cuda":
            torch.cuda.synchronize()
    if args.ops:
        if prepare is not None:
            prepare()
        out["kernels"] = census(run)
    if args.kernel_times:
        if prepare is not None:
            prepare()
        if device == "cuda":
            torch.cuda.synchronize()
        out["kernel_times"] = kernel_times(run, device)
    return out


# (patch, width, depth, heads) of maestro's presets (src/model/config.rs), for the official MAE's
# encoder at the same --model as maestro bench.
ENCODERS = {
    "vit_tiny_patch16": (16, 192, 12, 3),
    "vit_small_patch16": (16, 384, 12, 6),
    "vit_base_patch16": (16, 768, 12, 12),
    "vit_large_patch16": (16, 1024, 24, 16),
    "vit_huge_patch14": (14, 1280, 32, 16),
}


def step(args):
    import torch
    import timm
    dev = args.device
    modes = [("bf16 autocast", torch.bfloat16), ("f32", None)] if dev == "cuda" or args.ops or args.variants else [("f32", None)]
    short = {"bf16 autocast": "bf16", "f32": "f32"}
    wanted = set(args.variants.split(",")) if args.variants else None

    def want(v):
        return wanted is None or v in wanted
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    for name, dtype in modes:
        for compiled in ([False, True] if args.compile or wanted else [False]):
            if not want(short[name] + ("-compile" if compiled else "")):
                continue
            torch.manual_seed(0)
            model = timm.create_model(f"{args.model}_224", num_classes=1000, drop_path_rate=0.1, global_pool="avg",
                                      img_size=args.image_size).to(dev)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
            fwd = torch.compile(model) if compiled else model
            x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=dev)
            y = torch.softmax(torch.randn(args.batch, 1000, device=dev), 1)

            def one():
                with torch.autocast(device_type=dev, dtype=dtype, enabled=dtype is not None), \
                        torch.set_grad_enabled(args.phase != "forward"):
                    loss = torch.sum(-y * torch.log_softmax(fwd(x).float(), 1), 1).mean()
                finish(args.phase, loss, opt)
            if args.phase == "optimizer":
                times, peak = time_steps(opt.step, args.steps, args.warmup, dev, random_grads(model))
                extras = extras_of(args, opt.step, dev, random_grads(model))
            else:
                times, peak = time_steps(one, args.steps, args.warmup + (5 if compiled else 0), dev)
                extras = extras_of(args, one, dev)
            report(f"timm {args.model}_224 at {args.image_size} px fine-tune {PHASES[args.phase]}, {name}{', torch.compile' if compiled else ''}", args.batch, times, peak, extras)
            del model, opt, fwd
    if args.mae_repo and any(want("mae-" + short[n]) for n, _ in modes):
        sys.path.insert(0, args.mae_repo)
        import numpy as np
        if not hasattr(np, "float"):
            np.float = float
        import timm.models.vision_transformer as tvt

        class Block(tvt.Block):  # the official file passes qk_scale, which current timm dropped
            def __init__(self, *a, qk_scale=None, **k):
                super().__init__(*a, **k)
        import models_mae
        models_mae.Block = Block
        for name, dtype in modes:
            if not want("mae-" + short[name]):
                continue
            torch.manual_seed(0)
            patch, dim, depth, heads = ENCODERS[args.model]
            model = models_mae.MaskedAutoencoderViT(img_size=args.image_size, patch_size=patch, embed_dim=dim, depth=depth,
                                                    num_heads=heads, decoder_embed_dim=512, decoder_depth=1,
                                                    decoder_num_heads=16, mlp_ratio=4, norm_layer=torch.nn.LayerNorm,
                                                    norm_pix_loss=True).to(dev)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
            x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=dev)

            def one():
                with torch.autocast(device_type=dev, dtype=dtype, enabled=dtype is not None), \
                        torch.set_grad_enabled(args.phase != "forward"):
                    loss, _, _ = model(x, mask_ratio=0.9)
                finish(args.phase, loss, opt)
            if args.phase == "optimizer":
                times, peak = time_steps(opt.step, args.steps, args.warmup, dev, random_grads(model))
                extras = extras_of(args, opt.step, dev, random_grads(model))
            else:
                times, peak = time_steps(one, args.steps, args.warmup, dev)
                extras = extras_of(args, one, dev)
            report(f"official MAE pre-training {PHASES[args.phase]}, mask 0.9, decoder 1x512, {name}", args.batch, times, peak, extras)
            del model, opt


def kind_of(what):
    """(step kind, precision) of a measurement's description, to pair maestro's with PyTorch's."""
    kind = "pretrain" if "pre-training" in what else "finetune"
    return kind, "bf16" if "bf16" in what else "f32"


def paired(args, field, flag):
    """Each maestro measurement of `maestro bench step FLAG --json` that has `field`, with the
    first PyTorch one (not torch.compile) of this script's `step FLAG` of the same kind."""
    try:
        with open(args.maestro) as f:
            ours = [m for m in json.load(f) if m.get(field) is not None]
    except (OSError, ValueError, AttributeError, TypeError) as e:
        sys.exit(f"{args.maestro}: not the output of maestro bench step {flag} --json ({e})")
    try:
        with open(args.torch) as f:
            theirs = [m for m in map(json.loads, filter(str.strip, f)) if m.get(field) is not None
                      and "torch.compile" not in m["what"]]
    except (OSError, ValueError, AttributeError, TypeError) as e:
        sys.exit(f"{args.torch}: not the output of torch_reference.py step {flag} ({e})")
    if not ours or not theirs:
        sys.exit(f"{args.cmd}: no {field} in " + (args.maestro if not ours else args.torch))
    pairs = []
    for m in ours:
        match = [t for t in theirs if kind_of(t["what"]) == kind_of(m["what"])]
        if match:
            pairs.append((m, match[0]))
        else:
            print(f"{m['what']}: no PyTorch measurement of the same kind\n")
    return pairs


def census_diff(args):
    for m, t in paired(args, "kernels", "--ops"):
        a = {k["name"]: k for k in m["kernels"]}
        b = {k["name"]: k for k in t["kernels"]}

        def total(ks, field):
            return sum(k[field] for k in ks.values())
        print(f"maestro: {m['what']}\nPyTorch: {t['what']}")
        print(f"{'kernel':<48} {'maestro':>8} {'PyTorch':>8} {'M elements':>11} {'PyTorch':>8}")
        rows = sorted(set(a) | set(b), key=lambda n: -max(a.get(n, {}).get("input_elements", 0),
                                                          b.get(n, {}).get("input_elements", 0)))
        for n in rows:
            x, y = a.get(n, {}), b.get(n, {})
            print(f"{n:<48} {x.get('count', 0):>8} {y.get('count', 0):>8} {x.get('input_elements', 0) / 1e6:>11.1f} "
                  f"{y.get('input_elements', 0) / 1e6:>8.1f}")
        print(f"{'all':<48} {total(a, 'count'):>8} {total(b, 'count'):>8} {total(a, 'input_elements') / 1e6:>11.1f} "
              f"{total(b, 'input_elements') / 1e6:>8.1f}\n")


# Kinds of GPU kernel, by name (lower case; the first that matches): PyTorch's fused attention
# (before the products: its flash and memory-efficient kernels are CUTLASS templates, with
# `cutlass` in their names), cuBLAS/CUTLASS products, LayerNorm, then the generic kernels by
# what they do.
KERNEL_KINDS = [
    ("attention", r"flash|fmha|attention|sdpa"),
    ("matrix products", r"gemm|cutlass|xmma|nvjet|cublas|splitk"),
    ("LayerNorm", r"layer_norm|layernorm|gammabeta"),
    ("softmax, loss", r"softmax|nll_loss|cross_entropy"),
    ("AdamW", r"adam|multi_tensor"),
    ("copies, casts", r"copy|memcpy"),
    ("fills", r"fill|memset"),
    ("reductions", r"reduce"),
    ("other elementwise", r"elementwise|vectorized|unrolled"),
    ("other", r""),
]


def kind_of_kernel(name):
    import re
    low = name.lower()
    return next(kind for kind, pattern in KERNEL_KINDS if re.search(pattern, low))


def time_diff(args):
    for m, t in paired(args, "kernel_times", "--kernel-times"):
        a, b = m["kernel_times"], t["kernel_times"]
        print(f"maestro: {m['what']}\nPyTorch: {t['what']}")
        print(f"{'ms of the profiled step':<40} {'maestro':>9} {'PyTorch':>9} {'ratio':>7}")
        for label, x, y in [("wall", a["wall_ms"], b["wall_ms"]), ("device busy", a["busy_ms"], b["busy_ms"]),
                            ("device idle (wall - busy)", a["wall_ms"] - a["busy_ms"], b["wall_ms"] - b["busy_ms"]),
                            ("events summed", a["total_ms"], b["total_ms"])]:
            print(f"{label:<40} {x:>9.2f} {y:>9.2f} {x / y if y else float('nan'):>7.2f}")
        kinds = {}
        for side, prof in ((0, a), (1, b)):
            for k in prof["kernels"]:
                row = kinds.setdefault(kind_of_kernel(k["name"]), [0, 0, 0.0, 0.0])
                row[side] += k["count"]
                row[2 + side] += k["total_us"]
        print(f"\n{'by kind':<28} {'maestro':>8} {'PyTorch':>8} {'maestro ms':>11} {'PyTorch ms':>11} {'extra ms':>9}")
        for kind, _ in KERNEL_KINDS:
            if kind in kinds:
                n0, n1, t0, t1 = kinds[kind]
                print(f"{kind:<28} {n0:>8} {n1:>8} {t0 / 1e3:>11.2f} {t1 / 1e3:>11.2f} {(t0 - t1) / 1e3:>+9.2f}")
        x = {k["name"]: k for k in a["kernels"]}
        y = {k["name"]: k for k in b["kernels"]}
        rows = sorted(set(x) | set(y), key=lambda n: -abs(x.get(n, {}).get("total_us", 0) - y.get(n, {}).get("total_us", 0)))
        print(f"\n{'kernels differing most':<100} {'maestro':>8} {'PyTorch':>8} {'maestro us':>11} {'PyTorch us':>11}")
        for n in rows[:args.rows]:
            p, q = x.get(n, {}), y.get(n, {})
            print(f"{n[:100]:<100} {p.get('count', 0):>8} {q.get('count', 0):>8} {p.get('total_us', 0):>11.1f} "
                  f"{q.get('total_us', 0):>11.1f}")
        print()


def log_parts(path):
    """The parts of a benches/gpu/run.sh log: label -> {"rc", "s", "mib", "json": [objects]}. A
    part runs between `=== LABEL (limit ...): COMMAND` and `=== LABEL: exit RC after S s, peak GPU
    memory M MiB ...`; what it printed in between may hold JSON (one object per line from this
    script, an array over several lines from `maestro bench --json`)."""
    import re
    start = re.compile(r"^=== (\S+) \(limit \d+ s\): ")
    # The memory is missing when nvidia-smi gave no reading over the part.
    end = re.compile(r"^=== (\S+): exit (\d+) after ([\d.]+) s, peak GPU memory (-?\d+)? ?MiB")
    parts, label, text = {}, None, []
    decoder = json.JSONDecoder()
    with open(path) as f:
        for line in f:
            if m := start.match(line):
                label, text = m.group(1), []
            elif (m := end.match(line)) and m.group(1) == label:
                body, found, i = "".join(text), [], 0
                while i < len(body):
                    if body[i] in "[{" and (i == 0 or body[i - 1] == "\n"):
                        try:
                            value, j = decoder.raw_decode(body, i)
                        except ValueError:
                            i += 1
                            continue
                        found += value if isinstance(value, list) else [value]
                        i = j
                    else:
                        i += 1
                mib = int(m.group(4)) if m.group(4) is not None else None
                parts[label] = {"rc": int(m.group(2)), "s": float(m.group(3)), "mib": mib, "json": found}
                label = None
            elif label is not None:
                text.append(line)
    return parts


def summary(args):
    """The ratios a run.sh log holds, as Markdown: each maestro step against PyTorch's (images/s
    and the card's peak memory over the part), where a step's time goes, and the largest batch."""
    import re
    try:
        parts = log_parts(args.log)
    except OSError as e:
        sys.exit(f"summary: cannot read the log: {e}")

    def rate(label):
        part = parts.get(label)
        if not part or part["rc"] != 0 or not part["json"]:
            return None, None
        j = part["json"][0]
        return j.get("images_per_s"), part["mib"]

    def ratio(x, y):
        return f"{x / y:.2f}x" if x and y else "-"

    def num(x, fmt):
        return format(x, fmt) if x is not None else "-"

    printed = []

    def table(header, lines):
        printed.extend(lines)
        if lines:
            print(header)
            print("|" + "---|" * (header.count("|") - 1))
            print("\n".join(lines) + "\n")

    lines = []
    rows = [("fine-tune ViT-B/16, bf16 (timm eager autocast)", "torch-bf16", "maestro-libtorch-finetune-bf16-fused"),
            ("fine-tune ViT-B/16, bf16 (timm torch.compile)", "torch-bf16-compile", "maestro-libtorch-finetune-bf16-fused"),
            ("fine-tune ViT-B/16, f32 (TF32)", "torch-f32", "maestro-libtorch-finetune-f32-fused"),
            ("MAE pre-training, mask 0.9, 1x512 decoder, bf16", "torch-mae-bf16", "maestro-libtorch-pretrain-bf16-fused"),
            ("MAE pre-training, f32 (TF32)", "torch-mae-f32", "maestro-libtorch-pretrain-f32-fused"),
            ("fine-tune, bf16, maestro --unfused", "torch-bf16", "maestro-libtorch-finetune-bf16-unfused"),
            ("pre-training, bf16, maestro --unfused", "torch-mae-bf16", "maestro-libtorch-pretrain-bf16-unfused")]
    for what, torch_label, maestro_label in rows:
        (t, tm), (m, mm) = rate(torch_label), rate(maestro_label)
        if t is None and m is None:
            continue
        lines.append(f"| {what} | {num(t, '.1f')} | {num(m, '.1f')} | {ratio(m, t)} | {num(tm, 'd')} | "
                     f"{num(mm, 'd')} | {ratio(mm, tm)} |")
    table("| step (batch 128) | PyTorch img/s | maestro img/s | speed ratio (maestro / PyTorch) | PyTorch MiB | "
          "maestro MiB | memory ratio |", lines)

    lines = []
    for what, torch_label, maestro_label in [
            ("fine-tune forward + backward", "torch-finetune-bf16-backward", "maestro-libtorch-finetune-bf16-backward-fused"),
            ("fine-tune AdamW update", "torch-finetune-bf16-optimizer", "maestro-libtorch-finetune-bf16-optimizer-fused"),
            ("pre-training forward + backward", "torch-pretrain-bf16-backward", "maestro-libtorch-pretrain-bf16-backward-fused"),
            ("pre-training AdamW update", "torch-pretrain-bf16-optimizer", "maestro-libtorch-pretrain-bf16-optimizer-fused"),
            ("fine-tune step at batch 8 (the host's cost)", "torch-finetune-bf16-batch8", "maestro-libtorch-finetune-bf16-batch8")]:
        def ms(label):
            part = parts.get(label)
            return part["json"][0].get("step_ms") if part and part["rc"] == 0 and part["json"] else None
        a, b = ms(torch_label), ms(maestro_label)
        if a is None and b is None:
            continue
        lines.append(f"| {what} | {num(a, '.2f')} | {num(b, '.2f')} | {ratio(b, a)} |")
    table("| where the time goes (median ms per step) | PyTorch | maestro | time ratio (maestro / PyTorch) |", lines)

    scan = sorted((int(m.group(1)), part) for label, part in parts.items()
                  if (m := re.match(r"maestro-libtorch-batch-(\d+)", label)))
    lines = []
    for b, part in scan:
        j = part["json"][0] if part["json"] else {}
        held = j.get("held_mib")
        lines.append(f"| {b} | {part['rc']} | {num(part['mib'], 'd')}{f' ({held} held)' if held else ''} | "
                     f"{num(j.get('images_per_s'), '.1f')} |")
    table("| fine-tune batch (bf16) | exit | card memory MiB (held included) | img/s |", lines)
    if scan:
        fits = [b for b, part in scan if part["rc"] == 0]
        print(f"largest batch that ran: {max(fits) if fits else 'none'}")
    if not printed:
        print(f"no part of {args.log} measured a step that summary compares")


def make_jpegs(args):
    import random
    from PIL import Image, ImageDraw, ImageFilter
    os.makedirs(args.out, exist_ok=True)
    rng = random.Random(0)
    for i in range(args.count):
        w, h = (500, 375) if i % 3 else (375, 500)
        img = Image.new("RGB", (w, h), tuple(rng.randrange(256) for _ in range(3)))
        d = ImageDraw.Draw(img)
        for _ in range(40):
            x0, y0 = rng.randrange(w), rng.randrange(h)
            box = [x0, y0, x0 + rng.randrange(20, 200), y0 + rng.randrange(20, 200)]
            d.ellipse(box, fill=tuple(rng.randrange(256) for _ in range(3)))
        img = img.filter(ImageFilter.GaussianBlur(1.5))
        noise = Image.effect_noise((w, h), 24).convert("RGB")
        Image.blend(img, noise, 0.15).save(os.path.join(args.out, f"img{i:04d}.jpg"), quality=90)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("step")
    s.add_argument("--device", default="cuda")
    s.add_argument("--batch", type=int, default=128)
    s.add_argument("--steps", type=int, default=10)
    s.add_argument("--warmup", type=int, default=3)
    s.add_argument("--compile", action="store_true")
    s.add_argument("--mae-repo")
    s.add_argument("--phase", choices=list(PHASES), default="step")
    s.add_argument("--ops", action="store_true", help="add a census of one more step's kernels to each measurement")
    s.add_argument("--kernel-times", action="store_true", help="add the profile of one more step to each measurement")
    s.add_argument("--variants", help="comma list of bf16, f32, bf16-compile, f32-compile, mae-bf16, mae-f32")
    s.add_argument("--model", default="vit_base_patch16", help="the timm ViT (fine-tune) and the official MAE's encoder (pre-training), as maestro bench --model")
    s.add_argument("--image-size", type=int, default=224, help="both steps' input size, as maestro bench --image-size")
    q = sub.add_parser("pipeline")
    q.add_argument("paths", nargs="+")
    q.add_argument("--input-size", type=int, default=224)
    q.add_argument("--rounds", type=int, default=3)
    c = sub.add_parser("census-diff")
    c.add_argument("maestro")
    c.add_argument("torch")
    d = sub.add_parser("time-diff")
    d.add_argument("maestro")
    d.add_argument("torch")
    d.add_argument("--rows", type=int, default=30, help="how many kernels to list, those whose time differs most first")
    r = sub.add_parser("summary", help="the ratios in a benches/gpu/run.sh log, as Markdown tables")
    r.add_argument("log")
    m = sub.add_parser("make-jpegs")
    m.add_argument("out")
    m.add_argument("--count", type=int, default=200)
    args = p.parse_args()
    {"step": step, "pipeline": pipeline, "census-diff": census_diff, "time-diff": time_diff,
     "summary": summary, "make-jpegs": make_jpegs}[args.cmd](args)


if __name__ == "__main__":
    main()
