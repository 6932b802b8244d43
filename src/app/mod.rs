//! What each command does, below the argument parsing in `main.rs`: the commands print for
//! people, the library modules underneath return values.

pub mod bench;
pub mod finetune;
pub mod inspect;
pub mod pretrain;
pub mod proxy;
pub mod run;

use std::path::Path;

use crate::Error;
use crate::study::LoadedStudy;
use crate::study::summary::summarize;

/// `maestro validate STUDY`: check the study and its dataset, print the plan.
pub fn validate(file: &Path, json: bool) -> Result<(), Error> {
    let checked = LoadedStudy::load(file).map_err(Error::from).and_then(|loaded| {
        let catalog = loaded.scan()?;
        Ok((loaded, catalog))
    });
    let (loaded, catalog) = match checked {
        Ok(c) => c,
        Err(e) => {
            // A script asked for JSON: it gets the problems as JSON too (the text still goes
            // to stderr, and the exit code says the study is not usable).
            if json {
                println!("{}", serde_json::to_string_pretty(&problems_json(file, &e)).expect("problems serialise"));
            }
            return Err(e);
        }
    };
    let summary = summarize(&loaded, &catalog);
    if json {
        // `ok` as in the failure's JSON, so a script reads one key either way.
        let mut v = serde_json::to_value(&summary).expect("summary serialises");
        if let Some(m) = v.as_object_mut() {
            m.insert("ok".into(), serde_json::Value::Bool(true));
        }
        println!("{}", serde_json::to_string_pretty(&v).expect("summary serialises"));
    } else {
        print!("{summary}");
        println!("{}: ok", file.display());
    }
    Ok(())
}

/// `{"ok": false, "problems": [...]}` for a study that cannot be used: each problem with its
/// file, line and column (when known), field, message and hint.
fn problems_json(file: &Path, e: &Error) -> serde_json::Value {
    use serde_json::json;
    let problems: Vec<serde_json::Value> = match e {
        Error::Study(se) => se
            .problems
            .iter()
            .map(|p| {
                json!({
                    "file": se.file.display().to_string(),
                    "line": p.location.map(|l| l.line),
                    "column": p.location.map(|l| l.column),
                    "field": p.field,
                    "message": p.message,
                    "hint": p.hint,
                })
            })
            .collect(),
        other => vec![json!({
            "file": file.display().to_string(),
            "line": null,
            "column": null,
            "field": "",
            "message": other.to_string(),
            "hint": null,
        })],
    };
    json!({ "ok": false, "problems": problems })
}

/// `maestro doctor`: backends compiled in and the devices they see.
pub fn doctor() {
    println!("maestro {}", env!("CARGO_PKG_VERSION"));
    for (backend, state) in crate::device::doctor_report() {
        println!("  {backend:<12} {state}");
    }
    let fm = Path::new(crate::data::source::FASHION_MNIST_DEFAULT_ROOT);
    let fm_state = if crate::data::Source::fashion_mnist().scan().is_ok() {
        format!("installed at {}", fm.display())
    } else {
        "not installed (sudo apt-get install dataset-fashion-mnist)".into()
    };
    println!("  {:<12} {fm_state}", "demo data");
}
