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
      AdamW update on random gradients, as maestro bench --phase.
  python benches/torch_reference.py pipeline FILES_OR_DIRS... [--input-size 224] [--rounds 3]
      PIL decode + MAE's training transform (timm create_transform: RandomResizedCrop bicubic,
      flip, rand-m9-mstd0.5-inc1, erasing 0.25, normalise) on one core, per image.
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
    # timm's posterize can ask current Pillow for 0 bits (magnitude noise below 0) and raise;
    # such images are counted, and the time they took stays in.
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


def report(what, batch, timed, peak):
    first, times = timed
    print(json.dumps({"what": what, "batch": batch, "steps": len(times), "images_per_s": batch * len(times) / sum(times),
                      "step_ms": 1e3 * times[len(times) // 2], "first_step_s": first,
                      "peak_mem_gib": peak}), flush=True)


def step(args):
    import torch
    import timm
    dev = args.device
    modes = [("bf16 autocast", torch.bfloat16), ("f32", None)] if dev == "cuda" else [("f32", None)]
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
            else:
                times, peak = time_steps(one, args.steps, args.warmup + (5 if compiled else 0), dev)
            report(f"timm {args.model}_224 at {args.image_size} px fine-tune {PHASES[args.phase]}, {name}{', torch.compile' if compiled else ''}", args.batch, times, peak)
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
            model = models_mae.MaskedAutoencoderViT(patch_size=16, embed_dim=768, depth=12, num_heads=12,
                                                    decoder_embed_dim=512, decoder_depth=1, decoder_num_heads=16,
                                                    mlp_ratio=4, norm_layer=torch.nn.LayerNorm, norm_pix_loss=True).to(dev)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
            x = torch.randn(args.batch, 3, 224, 224, device=dev)

            def one():
                with torch.autocast(device_type=dev, dtype=dtype, enabled=dtype is not None), \
                        torch.set_grad_enabled(args.phase != "forward"):
                    loss, _, _ = model(x, mask_ratio=0.9)
                finish(args.phase, loss, opt)
            if args.phase == "optimizer":
                times, peak = time_steps(opt.step, args.steps, args.warmup, dev, random_grads(model))
            else:
                times, peak = time_steps(one, args.steps, args.warmup, dev)
            report(f"official MAE pre-training {PHASES[args.phase]}, mask 0.9, decoder 1x512, {name}", args.batch, times, peak)
            del model, opt


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
    s.add_argument("--variants", help="comma list of bf16, f32, bf16-compile, f32-compile, mae-bf16, mae-f32")
    s.add_argument("--model", default="vit_base_patch16", help="the fine-tune step's timm ViT, as maestro bench --model")
    s.add_argument("--image-size", type=int, default=224, help="the fine-tune step's input size, as maestro bench --image-size")
    q = sub.add_parser("pipeline")
    q.add_argument("paths", nargs="+")
    q.add_argument("--input-size", type=int, default=224)
    q.add_argument("--rounds", type=int, default=3)
    m = sub.add_parser("make-jpegs")
    m.add_argument("out")
    m.add_argument("--count", type=int, default=200)
    args = p.parse_args()
    {"step": step, "pipeline": pipeline, "make-jpegs": make_jpegs}[args.cmd](args)


if __name__ == "__main__":
    main()
