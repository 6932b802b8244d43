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
    let loaded = LoadedStudy::load(file)?;
    let catalog = loaded.scan()?;
    let summary = summarize(&loaded, &catalog);
    if json {
        println!("{}", serde_json::to_string_pretty(&summary).expect("summary serialises"));
    } else {
        print!("{summary}");
        println!("{}: ok", file.display());
    }
    Ok(())
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
