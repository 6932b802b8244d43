//! results.csv and results.parquet: one row per trial with every parameter and metric.

use std::path::Path;

use polars::prelude::*;

use crate::analysis::recommend::TrialRow;

pub fn frame(rows: &[TrialRow]) -> PolarsResult<DataFrame> {
    df!(
        "id" => rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        "role" => rows.iter().map(|r| r.role.clone()).collect::<Vec<_>>(),
        "proxy" => rows.iter().map(|r| r.proxy.clone()).collect::<Vec<_>>(),
        "setup" => rows.iter().map(|r| r.setup.clone()).collect::<Vec<_>>(),
        "llrd" => rows.iter().map(|r| r.llrd).collect::<Vec<_>>(),
        "blr" => rows.iter().map(|r| r.blr).collect::<Vec<_>>(),
        "repeat" => rows.iter().map(|r| r.repeat as u32).collect::<Vec<_>>(),
        "status" => rows.iter().map(|r| r.status.clone()).collect::<Vec<_>>(),
        "top1" => rows.iter().map(|r| r.top1).collect::<Vec<_>>(),
        "top5" => rows.iter().map(|r| r.top5).collect::<Vec<_>>(),
        "best_top1" => rows.iter().map(|r| r.best_top1).collect::<Vec<_>>(),
        "attempts" => rows.iter().map(|r| r.attempts as u32).collect::<Vec<_>>(),
        "unreadable_images" => rows.iter().map(|r| r.unreadable_images as u32).collect::<Vec<_>>(),
    )
}

pub fn write(rows: &[TrialRow], dir: &Path) -> Result<(), String> {
    let mut df = frame(rows).map_err(|e| e.to_string())?;
    let csv = dir.join("results.csv");
    let mut f = std::fs::File::create(&csv).map_err(|e| format!("{}: {e}", csv.display()))?;
    CsvWriter::new(&mut f).include_header(true).finish(&mut df).map_err(|e| format!("{}: {e}", csv.display()))?;
    let pq = dir.join("results.parquet");
    let f = std::fs::File::create(&pq).map_err(|e| format!("{}: {e}", pq.display()))?;
    ParquetWriter::new(f).finish(&mut df).map_err(|e| format!("{}: {e}", pq.display()))?;
    Ok(())
}
