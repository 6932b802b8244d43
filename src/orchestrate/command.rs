//! External trials: a user's own training command (MAE's main_finetune.py or alike), run with
//! the trial's values substituted, its JSON-lines log read back into a result.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::plan::{CommandTrial, TrialSpec, fmt_value};
use crate::train::spec::{EpochMetrics, FinetuneResult, RunStatus};

/// The placeholders `substitute` fills in.
pub const PLACEHOLDERS: &[&str] = &["llrd", "blr", "out", "seed", "data", "epochs", "batch_size"];

/// `{name}` tokens (lower-case identifiers) of a template that are no placeholder: a typo would
/// otherwise reach the shell as written.
pub fn unknown_placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        let shell = rest[..i].ends_with('$'); // ${var}: the shell's, not ours
        rest = &rest[i + 1..];
        if shell {
            continue;
        }
        let Some(j) = rest.find('}') else { break };
        let name = &rest[..j];
        let ident = name.starts_with(|c: char| c.is_ascii_lowercase()) && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ident && !PLACEHOLDERS.contains(&name) {
            out.push(format!("{{{name}}}"));
        }
    }
    out
}

/// Replace `{llrd}`, `{blr}`, `{out}`, `{seed}`, `{data}`, `{epochs}`, `{batch_size}`. With
/// `shell`, the two paths are quoted for `sh -c` where they need it (a space, a quote, ...);
/// a path of plain characters is left as it is, so `{out}/mae` stays one word either way.
pub fn substitute(template: &str, spec: &TrialSpec, out: &Path, data: &str, seed: u64, epochs: f64, batch: usize, shell: bool) -> String {
    let path = |p: &str| if shell { sh_word(p) } else { p.to_string() };
    template
        .replace("{llrd}", &fmt_value(spec.llrd))
        .replace("{blr}", &fmt_value(spec.blr))
        .replace("{out}", &path(&out.display().to_string()))
        .replace("{seed}", &seed.to_string())
        .replace("{data}", &path(data))
        .replace("{epochs}", &fmt_value(epochs))
        .replace("{batch_size}", &batch.to_string())
}

/// `s` as one shell word: unchanged when every character is plain, else single-quoted.
fn sh_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+,:=@%".contains(c)) {
        s.to_string()
    } else {
        super::slurm::sh_quote(s)
    }
}

/// Values of `key` in a JSON-lines file (lines without it, or not JSON, are skipped; bytes
/// that are not UTF-8, a progress bar's say, only spoil their own line).
pub fn metric_values(path: &Path, key: &str) -> Result<Vec<f64>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .filter_map(|l| {
            // Python's json.dumps writes NaN and Infinity bare, which JSON has no word for:
            // read them as the strings "NaN" and "inf", which parse to their f64s.
            serde_json::from_str::<serde_json::Value>(l).ok().or_else(|| {
                let quoted = l.replace("-Infinity", "\"-inf\"").replace("Infinity", "\"inf\"").replace("NaN", "\"NaN\"");
                serde_json::from_str::<serde_json::Value>(&quoted).ok()
            })
        })
        .filter_map(|v| v.get(key).and_then(|x| x.as_f64().or_else(|| x.as_str().and_then(|s| s.parse().ok()))))
        .collect())
}

/// A run's value from its epochs' metric: the last, or (`max`) the best. f64::max passes over a
/// NaN, so under `max` a non-finite epoch is the run's value: a run that diverged is not scored
/// by its epochs before it did.
fn score(mode: &str, v: &[f64]) -> f64 {
    match (mode, v.iter().find(|x| !x.is_finite())) {
        ("last", _) => v.last().copied().unwrap_or(f64::NAN),
        (_, Some(bad)) => *bad,
        _ => v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    }
}

/// Run the command; always returns a result (failed ones say why).
pub fn run(spec: &TrialSpec, cmd: &CommandTrial, out: &Path, data: &str, seed: u64, epochs: f64, batch: usize) -> FinetuneResult {
    let started = std::time::Instant::now();
    let line = substitute(&cmd.command, spec, out, data, seed, epochs, batch, true);
    let metric_file = substitute(&cmd.metric_file, spec, out, data, seed, epochs, batch, false);
    let mut result = FinetuneResult {
        name: spec.id.clone(),
        spec_hash: String::new(),
        status: RunStatus::Failed,
        top1: 0.0,
        top5: 0.0,
        best_top1: 0.0,
        epochs: Vec::new(),
        steps: 0,
        wall_s: 0.0,
        images_per_s: 0.0,
        train_images: 0,
        val_images: 0,
        num_classes: 0,
        diverged_at_step: None,
        error: None,
        unreadable_images: 0,
        precision: String::new(),
    };
    // Each start runs the command afresh, and scripts like main_finetune.py append to their
    // log: an earlier start's lines (a crashed attempt's, say) would count as this one's.
    let metric_path = Path::new(&metric_file);
    if metric_path.is_file() {
        let aside = (1..).map(|n| PathBuf::from(format!("{metric_file}.earlier-{n}"))).find(|p| !p.exists()).expect("a free name");
        match std::fs::rename(metric_path, &aside) {
            Ok(()) => eprintln!("{metric_file}: an earlier start's metrics, moved to {}", aside.display()),
            Err(e) => {
                result.error = Some(format!("{metric_file}: cannot set an earlier start's metrics aside: {e}"));
                return result;
            }
        }
    }
    eprintln!("$ {line}");
    let status = Command::new("sh").arg("-c").arg(&line).status();
    result.wall_s = started.elapsed().as_secs_f64();
    match status {
        Err(e) => result.error = Some(format!("cannot run `sh -c`: {e}")),
        Ok(s) if !s.success() => result.error = Some(format!("the command exited with {s}")),
        Ok(_) => match metric_values(Path::new(&metric_file), &cmd.jsonl_key) {
            Err(e) => result.error = Some(format!("no metric: {e}")),
            Ok(v) if v.is_empty() => result.error = Some(format!("{metric_file}: no line has `{}`", cmd.jsonl_key)),
            Ok(v) => {
                let value = score(&cmd.mode, &v);
                result.epochs = v
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| EpochMetrics { epoch: i + 1, train_loss: f64::NAN, val_loss: f64::NAN, top1: t, top5: f64::NAN, lr: f64::NAN, images_per_s: 0.0, wall_s: 0.0 })
                    .collect();
                if value.is_finite() {
                    result.status = RunStatus::Completed;
                    result.top1 = value;
                    result.best_top1 = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let top5 = metric_values(Path::new(&metric_file), "test_acc5").unwrap_or_default();
                    result.top5 = top5.last().copied().unwrap_or(f64::NAN);
                } else {
                    result.status = RunStatus::Diverged;
                    result.error = Some(format!("the metric `{}` is not finite", cmd.jsonl_key));
                }
            }
        },
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines_with_pythons_nan_and_infinity_are_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log.txt");
        std::fs::write(&p, "{\"train_loss\": NaN, \"test_acc1\": 50.0}\n{\"test_acc1\": Infinity}\n{\"test_acc1\": -Infinity}\nnot json\n{\"test_acc1\": \"61.5\"}\n").unwrap();
        let v = metric_values(&p, "test_acc1").unwrap();
        assert_eq!(v.len(), 4, "{v:?}");
        assert_eq!((v[0], v[1], v[2], v[3]), (50.0, f64::INFINITY, f64::NEG_INFINITY, 61.5));
    }

    #[test]
    fn a_non_finite_epoch_is_the_score_under_max() {
        assert_eq!(score("max", &[50.0, 61.5, 60.0]), 61.5);
        assert!(score("max", &[50.0, f64::NAN]).is_nan());
        assert_eq!(score("max", &[f64::NEG_INFINITY, 50.0]), f64::NEG_INFINITY);
        assert_eq!(score("last", &[f64::NAN, 50.0]), 50.0);
    }

    #[test]
    fn a_line_that_is_not_utf8_spoils_only_itself() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log.txt");
        std::fs::write(&p, b"{\"test_acc1\": 50.0}\nepoch 1 \xe5\x80 50%\n{\"test_acc1\": 61.5}\n").unwrap();
        assert_eq!(metric_values(&p, "test_acc1").unwrap(), vec![50.0, 61.5]);
    }

    #[test]
    fn paths_are_one_shell_word() {
        assert_eq!(sh_word("/runs/a_b-1/trials/x.y"), "/runs/a_b-1/trials/x.y");
        assert_eq!(sh_word("/runs/with space/it's"), r"'/runs/with space/it'\''s'");
        // `sh -c` reads the quoted path back as it was.
        let out = Command::new("sh").arg("-c").arg(format!("printf %s {}/mae", sh_word("/a b/'c'"))).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "/a b/'c'/mae");
    }

    #[test]
    fn unknown_placeholders_are_found_and_the_shells_are_not() {
        assert_eq!(unknown_placeholders("run --out {out} --x {outt} ${d} {Upper} {a b}"), vec!["{outt}".to_string()]);
    }
}
