//! `maestro inspect param-groups` equals the official MAE rule for every parameter.
//! The expected files come from scripts/fixtures/mae_param_groups.py (timm's models and
//! named_parameters, the rule of MAE's util/lr_decay.py and util/lr_sched.py).

mod util;
use serde_json::Value;
use util::*;

fn check(fixture: &str) {
    let path = util::fixture(fixture);
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let model = expected["model"].as_str().unwrap().trim_end_matches("_224").to_string();
    let llrd = expected["llrd"].as_f64().unwrap();
    let steps: Vec<(usize, f64)> =
        expected["base_lr_at_step"].as_object().unwrap().iter().map(|(k, v)| (k.parse().unwrap(), v.as_f64().unwrap())).collect();
    let params = expected["params"].as_array().unwrap();

    let dir = Dir::new();
    let mut runs: Vec<(Option<(usize, f64)>, Value)> = Vec::new();
    for at in std::iter::once(None).chain(steps.iter().copied().map(Some)) {
        let mut c = dir.maestro();
        c.args(["inspect", "param-groups", "--model", &model, "--llrd", &llrd.to_string(), "--json"]);
        c.args(["--blr", "1e-3", "--batch", "1024", "--epochs", "100", "--warmup", "5", "--min-lr", "1e-6", "--iters-per-epoch", "1251"]);
        if let Some((s, _)) = at {
            c.args(["--at-step", &s.to_string()]);
        }
        let r = run(c).success();
        runs.push((at, serde_json::from_str(&r.stdout()).unwrap()));
    }
    for (at, got) in runs {
        let got = got.as_array().unwrap();
        assert_eq!(got.len(), params.len(), "{fixture}: parameter count");
        for (g, e) in got.iter().zip(params) {
            let name = e["name"].as_str().unwrap();
            assert_eq!(g["name"], e["name"], "{fixture}: order");
            let (gs, es) = (g["lr_scale"].as_f64().unwrap(), e["lr_scale"].as_f64().unwrap());
            assert!((gs - es).abs() <= 1e-15 * es, "{fixture} {name}: lr_scale {gs} != {es}");
            assert_eq!(g["weight_decay"], e["weight_decay"], "{fixture} {name}: weight decay");
            if let Some((step, base)) = at {
                let lr = g["lr"].as_f64().unwrap();
                let want = base * es;
                assert!((lr - want).abs() <= 1e-12 * want.abs().max(1e-30), "{fixture} {name} step {step}: lr {lr} != {want}");
            }
        }
    }
}

#[test]
fn vit_b_llrd_065() {
    check("vit_base_patch16-llrd0.65.json");
}

#[test]
fn vit_b_llrd_075_with_learning_rates() {
    check("vit_base_patch16-llrd0.75.json");
}

#[test]
fn vit_b_llrd_085() {
    check("vit_base_patch16-llrd0.85.json");
}

#[test]
fn held_out_vit_l_llrd_08() {
    check("vit_large_patch16-llrd0.8-heldout.json");
}

#[test]
fn schedule_flags_are_checked_and_a_step_past_the_end_is_flagged() {
    let dir = Dir::new();
    let inspect = |extra: &[&str]| {
        let mut c = dir.maestro();
        c.args(["inspect", "param-groups", "--model", "vit_tiny_patch16", "--llrd", "0.75"]);
        c.args(extra);
        run(c)
    };
    inspect(&["--epochs", "0", "--warmup", "0", "--at-step", "3"]).code_is(2).stderr_has("--epochs must be positive, got 0");
    inspect(&["--iters-per-epoch", "0", "--blr=-1"])
        .code_is(2)
        .stderr_has("--iters-per-epoch must be at least 1, got 0")
        .stderr_has("--blr must be positive, got -1");
    // 100 epochs x 1251 steps = 125100 steps: step 125100 is one past the last.
    inspect(&["--at-step", "125100"]).success().stderr_has("--at-step 125100 is past the schedule's last step (125099");
    let last = inspect(&["--at-step", "125099"]).success();
    assert!(!last.stderr().contains("past the schedule"), "{}", last.stderr());
}
