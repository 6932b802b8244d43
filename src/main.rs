//! The `maestro` command: parse arguments, call the library, map errors to exit codes
//! (0 success, 1 failure, 2 a user error: a bad study, path or argument).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use maestro::Error;
use maestro::app;
use maestro::data::Source;
use maestro::data::proxy::ProxyRule;

#[derive(Parser)]
#[command(name = "maestro", version, about = "Find the fine-tuning recipe (LLRD) for lightly pre-trained MAEs on proxy datasets")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a study and its dataset, and print the plan: proxies, setups, trials, cost.
    Validate {
        /// The study file (YAML).
        study: PathBuf,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The main job: build the proxies, run the LLRD x LR grid as parallel trials, fit the
    /// curve, run the full-dataset fine-tune(s), write the report. Resumes a stopped run.
    Run {
        study: PathBuf,
        /// The run folder (journal, trials, logs); default runs/<study name>.
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Where the report goes; default reports/<study name>.
        #[arg(long)]
        report_dir: Option<PathBuf>,
        /// No progress bar or per-trial lines.
        #[arg(long)]
        quiet: bool,
    },
    /// The trial table of a run folder (also while it runs).
    Status { run_dir: PathBuf },
    /// Cancel a run's Slurm jobs (scancel), leaving the journal consistent; `run` resumes it.
    Cancel { run_dir: PathBuf },
    /// Regenerate a run's report (figures, tables, recipes, summary) from its folder.
    Report {
        run_dir: PathBuf,
        /// Default reports/<study name>.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Build and inspect proxy subsets of a dataset.
    #[command(subcommand)]
    Proxy(ProxyCommand),
    /// List the backends compiled in and the devices they can see.
    Doctor,
    /// Fine-tune a ViT with MAE's recipe (LLRD, schedule, augmentation) on a dataset or proxy.
    Finetune(FinetuneArgs),
    /// MAE pre-training with the light recipe (90% masking, a 1-block decoder) or MAE's.
    Pretrain(PretrainArgs),
    /// The paper's Figure 2: original / masked / reconstruction / reconstruction + visible, as a
    /// PNG grid, from a `maestro pretrain` folder.
    Reconstruct {
        /// The pre-training folder (or its mae.safetensors, with pretrain.json beside it).
        checkpoint: PathBuf,
        /// Image files; default: --count images spread over the dataset's validation split.
        #[arg(long, num_args = 1..)]
        images: Vec<PathBuf>,
        #[arg(long, default_value_t = 6)]
        count: usize,
        /// Default: the ratio it was pre-trained with.
        #[arg(long, allow_negative_numbers = true)]
        mask_ratio: Option<f64>,
        /// Seeds the masking noise.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value = "reconstruction.png")]
        out: PathBuf,
    },
    /// Run one trial from its spec (JSON), into the spec's folder.
    Trial {
        spec: PathBuf,
        /// No progress bar or per-epoch lines.
        #[arg(long)]
        quiet: bool,
    },
    /// Show what the recipe does to a model.
    #[command(subcommand)]
    Inspect(InspectCommand),
    /// Throughput: the fine-tune and pre-training steps (images/s, model FLOP utilisation) and
    /// the input pipeline (images/s per core).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The fine-tune step and the MAE pre-training step on a fixed random batch.
    Step {
        /// A model preset (vit_base_patch16, ...).
        #[arg(long, default_value = "vit_base_patch16")]
        model: String,
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// Input resolution (the preset's, 224, by default).
        #[arg(long)]
        image_size: Option<usize>,
        /// f32, or bf16 (mixed precision: bf16 matmuls and attention in the transformer blocks,
        /// f32 weights and optimizer state).
        #[arg(long, default_value = "f32")]
        precision: String,
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// The device's peak dense TFLOP/s at this precision, for the utilisation.
        #[arg(long, allow_negative_numbers = true)]
        peak_tflops: Option<f64>,
        /// Which steps: finetune, pretrain or both.
        #[arg(long, default_value = "both")]
        only: String,
        /// How much of the step to time: forward (the loss, without autodiff), backward
        /// (forward + backward), step (+ the AdamW update) or optimizer (the AdamW update alone,
        /// on random gradients), to see where a step's time goes.
        #[arg(long, default_value = "step")]
        phase: String,
        /// Pre-training step: mask ratio and decoder (the efficient recipe by default).
        #[arg(long, allow_negative_numbers = true, default_value_t = 0.9)]
        mask_ratio: f64,
        #[arg(long, default_value_t = 1)]
        decoder_depth: usize,
        #[arg(long, default_value_t = 512)]
        decoder_dim: usize,
        #[arg(long, default_value_t = 16)]
        decoder_heads: usize,
        /// Run attention, LayerNorm and the linear layers as burn's composition of primitives
        /// instead of one fused operation each, and burn's AdamW (on LibTorch), to measure what
        /// fusing buys.
        #[arg(long)]
        unfused: bool,
        /// After the timed steps, run one more under a census of the kernels PyTorch runs, and
        /// print it (LibTorch devices; benches/torch_reference.py --ops counts timm's the same way).
        #[arg(long)]
        ops: bool,
        /// --ops with each kernel's tensor inputs (dtype, sizes, strides) beside its name.
        #[arg(long)]
        ops_by_shape: bool,
        /// After the timed steps, run one more under PyTorch's profiler and print each kernel's
        /// GPU time and how long the GPU was busy (libtorch-cuda; on libtorch-cpu, the CPU's
        /// operations; benches/torch_reference.py --kernel-times profiles timm's the same way).
        #[arg(long)]
        kernel_times: bool,
        /// Hold this many MiB of the device's memory in one allocation for the whole run, so a
        /// larger card offers the steps only what a smaller one has (benches/gpu/run.sh gives an
        /// H200 the 81559 MiB of an 80 GB H100 to find the largest batch that fits there).
        #[arg(long, default_value_t = 0)]
        hold_mib: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Checks the fused attention and LayerNorm against burn's composition of primitives on a
    /// device, values and gradients, at ViT-B/16's shapes, in f32 and bf16, and maestro's AdamW
    /// against burn's. Fails when they disagree beyond what the precision explains.
    Fused {
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[arg(long)]
        json: bool,
    },
    /// Decode + timm's training transform (RandomResizedCrop, flip, RandAugment m9, erasing,
    /// normalise) on image files, per core and on all threads.
    Pipeline {
        /// Image files, or folders searched recursively.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long, default_value_t = 224)]
        input_size: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Default: all cores.
        #[arg(long)]
        threads: Option<usize>,
        /// The batch size of the loader measurement.
        #[arg(long, default_value_t = 128)]
        batch: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum InspectCommand {
    /// Per parameter: its timm name, LLRD lr_scale and weight decay (and, with --at-step, its
    /// learning rate at that optimizer step), as MAE's param_groups_lrd and lr_sched compute them.
    ParamGroups(ParamGroupsArgs),
}

/// What a training command trains on and where it writes (shared by finetune and pretrain).
#[derive(Args)]
struct TrainArgs {
    /// Take dataset, model (and recipe) from this study.
    #[arg(long)]
    study: Option<PathBuf>,
    /// Without --study: `fashion-mnist` or an ImageFolder root.
    #[arg(long, conflicts_with = "study")]
    dataset: Option<String>,
    /// Without --study: a model preset (default vit_base_patch16).
    #[arg(long, conflicts_with = "study")]
    model: Option<String>,
    /// With --dataset fashion-mnist: its folder, when not Debian's.
    #[arg(long, conflicts_with = "study")]
    root: Option<PathBuf>,
    /// With an ImageFolder --dataset: the training split's folder under it (default train).
    #[arg(long, conflicts_with = "study")]
    train_split: Option<String>,
    /// With an ImageFolder --dataset: the validation split's folder under it (default val).
    #[arg(long, conflicts_with = "study")]
    val_split: Option<String>,
    /// Train on this proxy manifest instead of the whole dataset.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Override a study field, e.g. --set finetune.epochs=5 --set model.patch_size=7.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// cpu, cuda:N, libtorch-cuda:N or libtorch-cpu (burn's LibTorch backend; build with `tch`) or wgpu.
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long)]
    seed: Option<u64>,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Output folder (resumable: run the same command again to continue).
    #[arg(long)]
    out: PathBuf,
    /// No progress bar or per-epoch lines.
    #[arg(long)]
    quiet: bool,
}

impl From<TrainArgs> for app::finetune::TrainTarget {
    fn from(a: TrainArgs) -> Self {
        app::finetune::TrainTarget {
            study: a.study,
            dataset: a.dataset,
            model: a.model,
            root: a.root,
            train_split: a.train_split,
            val_split: a.val_split,
            manifest: a.manifest,
            sets: a.sets,
            device: a.device,
            seed: a.seed,
            max_steps: a.max_steps,
            out: a.out,
            quiet: a.quiet,
        }
    }
}

#[derive(Args)]
struct FinetuneArgs {
    #[command(flatten)]
    train: TrainArgs,
    /// Layer-wise LR decay (default: the recipe's layer_decay).
    #[arg(long, allow_negative_numbers = true)]
    llrd: Option<f64>,
    /// Base learning rate (default: the recipe's blr).
    #[arg(long, allow_negative_numbers = true)]
    blr: Option<f64>,
    /// A pre-trained encoder to start from (.pth, .safetensors, .bpk).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
}

#[derive(Args)]
struct PretrainArgs {
    #[command(flatten)]
    train: TrainArgs,
    /// Use this pre-training setup's `pretrain:` block from the study.
    #[arg(long, requires = "study", conflicts_with = "preset")]
    setup: Option<String>,
    /// `efficient` (the paper's: 100 epochs, mask 0.9, 1-block decoder, batch 1024; the default)
    /// or `mae` (1600 epochs, mask 0.75, 8-block decoder, batch 4096).
    #[arg(long)]
    preset: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    epochs: Option<f64>,
    /// Warmup epochs.
    #[arg(long, allow_negative_numbers = true)]
    warmup: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    mask_ratio: Option<f64>,
    #[arg(long)]
    decoder_depth: Option<usize>,
    #[arg(long)]
    decoder_dim: Option<usize>,
    #[arg(long)]
    decoder_heads: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Base learning rate: lr = blr x batch / 256.
    #[arg(long, allow_negative_numbers = true)]
    blr: Option<f64>,
    /// SupMAE: add the supervised branch on the visible tokens (loss + 0.01 x CE(logits / 10)).
    #[arg(long)]
    supmae: bool,
}

#[derive(Args)]
struct ParamGroupsArgs {
    /// A model preset, e.g. vit_base_patch16.
    #[arg(long)]
    model: String,
    /// Layer-wise LR decay.
    #[arg(long, allow_negative_numbers = true)]
    llrd: f64,
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.05)]
    weight_decay: f64,
    #[arg(long, default_value_t = 1000)]
    num_classes: usize,
    /// Classify from the cls token (norm) instead of the mean of patch tokens (fc_norm).
    #[arg(long)]
    cls_token: bool,
    /// Base learning rate: lr = blr x batch / 256.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1e-3)]
    blr: f64,
    /// Effective batch size (batch x accumulation x devices).
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 100.0)]
    epochs: f64,
    /// Warmup epochs.
    #[arg(long, allow_negative_numbers = true, default_value_t = 5.0)]
    warmup: f64,
    #[arg(long, allow_negative_numbers = true, default_value_t = 1e-6)]
    min_lr: f64,
    /// Micro-batches per epoch (len(data_loader); ImageNet at batch 1024: 1251).
    #[arg(long, default_value_t = 1251)]
    iters_per_epoch: usize,
    /// Gradient accumulation steps.
    #[arg(long, default_value_t = 1)]
    accum: usize,
    /// Also print each parameter's learning rate at this optimizer step (0-based).
    #[arg(long)]
    at_step: Option<usize>,
    /// JSON: [{"name", "lr_scale", "weight_decay"[, "lr"]}].
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ProxyCommand {
    /// Draw a proxy subset and write its manifest (or all proxies of a study with --study).
    Build(BuildArgs),
    /// Per-class counts of a manifest.
    Stats {
        /// Proxy manifest(s).
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
        /// Also read every image once and report the ones that cannot be decoded.
        #[arg(long)]
        decode: bool,
    },
}

#[derive(Args)]
struct BuildArgs {
    /// Build every proxy of this study into --out-dir.
    #[arg(long, conflicts_with_all = ["dataset", "classes", "fraction", "out", "name", "seed"])]
    study: Option<PathBuf>,
    /// Where --study writes its manifests (`<proxy name>.manifest`).
    #[arg(long, default_value = "proxies", requires = "study")]
    out_dir: PathBuf,

    /// `fashion-mnist`, or the root folder of an ImageFolder dataset.
    #[arg(long, required_unless_present = "study")]
    dataset: Option<String>,
    /// Fashion-MNIST's folder, when not Debian's.
    #[arg(long)]
    root: Option<PathBuf>,
    /// ImageFolder training split folder under the root.
    #[arg(long, default_value = "train")]
    train_split: String,
    /// ImageFolder validation split folder under the root.
    #[arg(long, default_value = "val")]
    val_split: String,
    /// Draw this many classes at random.
    #[arg(long)]
    classes: Option<usize>,
    /// Keep this fraction of every class's training images (at least one).
    #[arg(long, allow_negative_numbers = true)]
    fraction: Option<f64>,
    /// The random seed of the draw.
    #[arg(long)]
    seed: Option<u64>,
    /// The manifest to write.
    #[arg(long, required_unless_present = "study")]
    out: Option<PathBuf>,
    /// The proxy's name (default: the manifest's file stem).
    #[arg(long)]
    name: Option<String>,

    /// Also write an ImageFolder tree of the proxy here (links, or PNGs for IDX data); with
    /// --study, one sub-folder per proxy.
    #[arg(long)]
    materialize: Option<PathBuf>,
}

fn proxy_build(a: BuildArgs) -> Result<(), Error> {
    if let Some(study) = &a.study {
        return app::proxy::build_for_study(study, &a.out_dir, a.materialize.as_deref());
    }
    let (dataset, out) = (a.dataset.expect("clap requires it"), a.out.expect("clap requires it"));
    if a.classes.is_none() && a.fraction.is_none() {
        return Err(Error::Usage("give --classes K, --fraction F, or both".into()));
    }
    let rule = ProxyRule { classes: a.classes, fraction: a.fraction };
    let source = if dataset == "fashion-mnist" {
        match a.root {
            Some(root) => Source::FashionMnist { root },
            None => Source::fashion_mnist(),
        }
    } else {
        Source::Imagefolder { root: PathBuf::from(&dataset), train: a.train_split, val: a.val_split }
    };
    let catalog = source.scan()?;
    rule.check(catalog.num_classes()).map_err(|e| Error::Usage(format!("{}: {e}", source.describe())))?;
    let name = a
        .name
        .unwrap_or_else(|| out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "proxy".into()));
    let request = app::proxy::BuildRequest { name, rule, seed: a.seed.unwrap_or(0), out, materialize: a.materialize };
    app::proxy::build_all(&source, &catalog, &[request])?;
    Ok(())
}

fn run(cli: Cli) -> Result<(), Error> {
    // Commands that print tables or plans end quietly when their reader does (`| head`), as
    // other command-line tools do, instead of panicking on the broken pipe. Not the runner and
    // trials, which talk to child processes through pipes.
    if matches!(cli.command, Command::Validate { .. } | Command::Status { .. } | Command::Inspect(_) | Command::Proxy(_) | Command::Doctor) {
        // SAFETY: before any thread exists; restores the default disposition of SIGPIPE.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match cli.command {
        Command::Validate { study, json } => app::validate(&study, json),
        Command::Run { study, run_dir, report_dir, quiet } => app::run::run_study(&study, run_dir, report_dir, quiet),
        Command::Status { run_dir } => app::run::status(&run_dir),
        Command::Cancel { run_dir } => app::run::cancel(&run_dir),
        Command::Report { run_dir, out } => app::run::report(&run_dir, out),
        Command::Proxy(ProxyCommand::Build(args)) => proxy_build(args),
        Command::Proxy(ProxyCommand::Stats { manifests, decode }) => {
            manifests.iter().try_for_each(|m| app::proxy::stats(m, decode))
        }
        Command::Finetune(a) => app::finetune::finetune(&app::finetune::FinetuneRequest {
            target: a.train.into(),
            llrd: a.llrd,
            blr: a.blr,
            checkpoint: a.checkpoint,
        }),
        Command::Pretrain(a) => app::pretrain::pretrain(&app::pretrain::PretrainRequest {
            target: a.train.into(),
            setup: a.setup,
            preset: a.preset,
            epochs: a.epochs,
            warmup: a.warmup,
            mask_ratio: a.mask_ratio,
            decoder_depth: a.decoder_depth,
            decoder_dim: a.decoder_dim,
            decoder_heads: a.decoder_heads,
            batch_size: a.batch_size,
            blr: a.blr,
            supmae: a.supmae,
        }),
        Command::Reconstruct { checkpoint, images, count, mask_ratio, seed, out } => {
            app::pretrain::reconstruct(&maestro::report::reconstruct::Request { checkpoint, images, count, mask_ratio, seed, out })
        }
        Command::Trial { spec, quiet } => app::finetune::trial(&spec, quiet),
        Command::Bench(BenchCommand::Step { model, batch, image_size, precision, device, steps, warmup, peak_tflops, only, phase, mask_ratio, decoder_depth, decoder_dim, decoder_heads, unfused, ops, ops_by_shape, kernel_times, hold_mib, json }) => {
            app::bench::step(&app::bench::StepArgs { model, batch, image_size, precision, device, steps, warmup, peak_tflops, only, phase, mask_ratio, decoder_depth, decoder_dim, decoder_heads, unfused, ops, ops_by_shape, kernel_times, hold_mib, json })
        }
        Command::Bench(BenchCommand::Fused { device, batch, json }) => app::bench::fused(&device, batch, json),
        Command::Bench(BenchCommand::Pipeline { paths, input_size, rounds, threads, batch, json }) => {
            app::bench::pipeline(&paths, input_size, rounds, threads, batch, json)
        }
        Command::Inspect(InspectCommand::ParamGroups(a)) => app::inspect::param_groups(&app::inspect::ParamGroupsRequest {
            model: a.model,
            num_classes: a.num_classes,
            global_pool: !a.cls_token,
            llrd: a.llrd,
            weight_decay: a.weight_decay,
            blr: a.blr,
            batch: a.batch,
            epochs: a.epochs,
            warmup: a.warmup,
            min_lr: a.min_lr,
            iters_per_epoch: a.iters_per_epoch,
            accum: a.accum,
            at_step: a.at_step,
            json: a.json,
        }),
        Command::Doctor => {
            app::doctor();
            Ok(())
        }
    }
}

/// glibc's malloc starts with a 128 KiB mmap threshold and trims the heap's top as soon as that
/// much of it is free, raising both only as large blocks come and go. The training transform
/// frees a few intermediate images of a few hundred KiB per sample, so the heap kept shrinking
/// and growing again, each time with fresh page faults (`strace -c` of `bench pipeline`: 1097
/// brk and 68 madvise calls, against 10 and 3). Fixing the thresholds at the ceiling glibc's own
/// adaptation can reach on 64-bit (blocks up to 32 MiB from the heap, 64 MiB of free heap before
/// trimming) makes the transform 1.30x faster per core and the demo's CPU fine-tune 1.09-1.26x,
/// for a few MB more peak memory (`benches/results/malloc-cpu-2026-11-28.txt`): no arena keeps
/// more than glibc's warmed-up limits would let it. Batches (77 MB at ViT-B's 128 x 224 px) stay
/// mmapped. A user's own threshold settings (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`,
/// `MALLOC_TOP_PAD_`, `MALLOC_MMAP_MAX_`, or the same in `GLIBC_TUNABLES`) are left alone.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const KNOBS: [&str; 4] = ["mmap_threshold", "trim_threshold", "top_pad", "mmap_max"];
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        let user_set = KNOBS.iter().any(|k| {
            tunables.contains(&format!("glibc.malloc.{k}")) || std::env::var_os(format!("MALLOC_{}_", k.to_uppercase())).is_some()
        });
        if !user_set {
            // SAFETY: mallopt only sets the allocator's parameters; called before any thread exists.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
            }
        }
    }
}

fn main() -> ExitCode {
    // burn materialises a loaded optimizer state on its default device (burn-optim's
    // ModuleOptimizer::load_record takes no device) and moves it to each parameter's device on
    // the next step. In a build with the `cuda` feature that default is CubeCL's CUDA device: a
    // resumed trial on `libtorch-cpu` panics without a card, and on `libtorch-cuda:N` starts a
    // second GPU runtime. Load it on the CPU unless the user chose a default.
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: the first statement of main, before any thread exists.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
    tune_malloc();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!, which panics when stderr cannot be written: the exit code must stand.
            let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("error: {e}\n"));
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn proxy_build_needs_a_dataset_or_a_study() {
        assert!(Cli::try_parse_from(["maestro", "proxy", "build", "--classes", "5"]).is_err());
        assert!(Cli::try_parse_from(["maestro", "proxy", "build", "--study", "s.yaml"]).is_ok());
        assert!(Cli::try_parse_from(["maestro", "proxy", "build", "--study", "s.yaml", "--classes", "3"]).is_err());
        assert!(
            Cli::try_parse_from(["maestro", "proxy", "build", "--dataset", "fashion-mnist", "--classes", "5", "--out", "x.manifest"])
                .is_ok()
        );
    }
}
