//! Scanning an ImageFolder tree and building both proxies from it, in files per second.
//!
//!     cargo bench --bench proxy_scan [-- CLASSES FILES_PER_CLASS REPEATS]
//!
//! The tree (default 1000 classes x 100 files, ImageNet's class count) is generated once in a
//! temp folder; scanning never opens a file, so the files are one byte. Every figure is the
//! median of REPEATS runs on a warm page cache, shown beside two baselines measured in the
//! same run: a bare recursive `read_dir` (the floor: listing without sorting or labels) and,
//! when python3 is present, torchvision's `find_classes` + `make_dataset` logic
//! (benches/torchvision_scan.py, the standard library only).

use std::path::Path;
use std::time::Instant;

use maestro::data::imagefolder;
use maestro::data::proxy::{self, ProxyRule};
use maestro::data::Source;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time<T>(repeats: usize, mut f: impl FnMut() -> T) -> f64 {
    median(
        (0..repeats)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn raw_walk(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            n += raw_walk(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let classes = args.first().copied().unwrap_or(1000);
    let per_class = args.get(1).copied().unwrap_or(100);
    let repeats = args.get(2).copied().unwrap_or(5);

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let t = Instant::now();
    for split in ["train", "val"] {
        let n = if split == "train" { per_class } else { (per_class / 10).max(1) };
        for c in 0..classes {
            let d = root.join(split).join(format!("n{:08}", c));
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                std::fs::write(d.join(format!("n{c:08}_{i}.JPEG")), b"x").unwrap();
            }
        }
    }
    let source = Source::Imagefolder { root: root.to_path_buf(), train: "train".into(), val: "val".into() };
    let catalog = source.scan().unwrap();
    let files = catalog.train.items.len() + catalog.val.items.len();
    println!(
        "tree: {classes} classes x {per_class} train (+{} val) files = {files} files, generated in {:.1} s; median of {repeats}",
        (per_class / 10).max(1),
        t.elapsed().as_secs_f64()
    );

    let raw = time(repeats, || raw_walk(root));
    let scan = time(repeats, || imagefolder::scan(root, "train", "val").unwrap());
    let out = tmp.path().join("manifests");
    let build = time(repeats, || {
        let cat = source.scan().unwrap();
        for (name, rule) in [
            ("subset", ProxyRule { classes: Some(classes / 5), fraction: None }),
            ("fraction", ProxyRule { classes: None, fraction: Some(0.1) }),
        ] {
            proxy::build(name, &source, &cat, rule, 0).unwrap().write(&out.join(format!("{name}.manifest"))).unwrap();
        }
    });

    let row = |what: &str, secs: f64| {
        println!("  {what:<48} {:>8.3} s  {:>10.0} files/s  {:>5.2}x the bare walk's time", secs, files as f64 / secs, secs / raw);
    };
    row("bare recursive read_dir (baseline)", raw);
    row("maestro scan (torchvision order, labels)", scan);
    row(&format!("scan + build {}-class subset + 10% proxies", classes / 5), build);

    // Read at run time (cargo sets it), not compiled in: a binary reused from a shared target
    // folder would otherwise look in the checkout that built it.
    let repo = std::env::var_os("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let script = repo.join("benches/torchvision_scan.py");
    match std::process::Command::new("python3").arg(&script).arg(root.join("train")).arg(root.join("val")).arg(repeats.to_string()).output() {
        Ok(o) if o.status.success() => {
            let secs: f64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(f64::NAN);
            row("torchvision find_classes + make_dataset (python)", secs);
            println!("  maestro's scan is {:.1}x faster than torchvision's", secs / scan);
        }
        _ => println!("  (python3 not available: torchvision baseline skipped)"),
    }
}
