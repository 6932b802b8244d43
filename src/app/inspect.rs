//! `maestro inspect param-groups`: the learning rate and weight decay every parameter gets.

use serde::Serialize;

use crate::Error;
use crate::model::config::VitShape;
use crate::model::vit::VitConfig;
use crate::train::llrd;
use crate::train::schedule::CosineSchedule;

pub struct ParamGroupsRequest {
    pub model: String,
    pub num_classes: usize,
    pub global_pool: bool,
    pub llrd: f64,
    pub weight_decay: f64,
    pub blr: f64,
    /// Effective batch (batch x accumulation x devices).
    pub batch: usize,
    pub epochs: f64,
    pub warmup: f64,
    pub min_lr: f64,
    /// Micro-batches per epoch.
    pub iters_per_epoch: usize,
    pub accum: usize,
    pub at_step: Option<usize>,
    pub json: bool,
}

#[derive(Serialize)]
struct Row {
    name: String,
    lr_scale: f64,
    weight_decay: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    lr: Option<f64>,
}

pub fn param_groups(r: &ParamGroupsRequest) -> Result<(), Error> {
    let shape = VitShape::preset(&r.model).ok_or_else(|| {
        Error::Usage(format!("unknown model `{}`; known: {}", r.model, crate::model::config::PRESETS.join(", ")))
    })?;
    if !(r.llrd > 0.0 && r.llrd <= 1.0) {
        return Err(Error::Usage(format!("--llrd must be in (0, 1], got {}", r.llrd)));
    }
    let mut bad = Vec::new();
    for (flag, v) in [("--num-classes", r.num_classes), ("--batch", r.batch), ("--iters-per-epoch", r.iters_per_epoch), ("--accum", r.accum)] {
        if v == 0 {
            bad.push(format!("{flag} must be at least 1, got 0"));
        }
    }
    for (flag, v, positive) in [("--blr", r.blr, true), ("--epochs", r.epochs, true), ("--weight-decay", r.weight_decay, false), ("--warmup", r.warmup, false), ("--min-lr", r.min_lr, false)] {
        if !(v.is_finite() && (v > 0.0 || (!positive && v == 0.0))) {
            bad.push(format!("{flag} must be {}, got {v}", if positive { "positive" } else { "0 or more" }));
        }
    }
    if r.warmup.is_finite() && r.epochs.is_finite() && r.warmup > r.epochs {
        bad.push(format!("--warmup {} is more than the {} epochs", r.warmup, r.epochs));
    }
    if !bad.is_empty() {
        return Err(Error::Usage(bad.join("; ")));
    }
    let depth = shape.depth;
    let cfg = VitConfig { shape, num_classes: r.num_classes, drop_path: 0.0, global_pool: r.global_pool, bf16: false };
    let model = cfg.init(&burn::tensor::Device::flex());
    let recipes = llrd::param_recipes(&model, depth, r.llrd, r.weight_decay);

    let lrs = r.at_step.map(|step| {
        // --batch is already the effective batch.
        let schedule = CosineSchedule { accum_iter: r.accum, ..CosineSchedule::from_blr(r.blr, r.batch, 1, r.min_lr, r.warmup, r.epochs, r.iters_per_epoch) };
        if step >= schedule.total_steps() {
            eprintln!(
                "warning: --at-step {step} is past the schedule's last step ({}: {} epochs of {} steps); the learning rates below are the cosine's continued, which no run reaches",
                schedule.total_steps() - 1,
                r.epochs,
                schedule.steps_per_epoch()
            );
        }
        // The trainer's own scheduler, started at `step`: what the optimizer would receive.
        let mut sched = llrd::scheduler(&recipes, &schedule, step);
        let lr = sched.step();
        recipes.iter().map(|p| lr.lr_from_param(p.id, Some(&p.path))).collect::<Vec<f64>>()
    });

    let rows: Vec<Row> = recipes
        .iter()
        .enumerate()
        .map(|(i, p)| Row { name: p.name.clone(), lr_scale: p.lr_scale, weight_decay: p.weight_decay, lr: lrs.as_ref().map(|l| l[i]) })
        .collect();
    if r.json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("rows serialise"));
    } else {
        println!("{:<32} {:>12} {:>8} {:>12}", "parameter", "lr_scale", "wd", if lrs.is_some() { "lr" } else { "" });
        for row in &rows {
            let lr = row.lr.map(|l| format!("{l:.6e}")).unwrap_or_default();
            println!("{:<32} {:>12.6e} {:>8} {:>12}", row.name, row.lr_scale, row.weight_decay, lr);
        }
        println!("{} parameters, LLRD {}, {} layers", rows.len(), r.llrd, depth + 1);
    }
    Ok(())
}
