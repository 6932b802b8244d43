//! A small harness for driving the `maestro` binary: a temp folder per test and a command
//! that prints everything when an expectation fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// The model-parity tests run on this device (`MAESTRO_TEST_DEVICE`, else burn's CPU backend).
#[allow(unused_imports)] // not every test binary runs a model
pub use maestro::device::test_device;

/// The checkout under test. `cargo test` sets `CARGO_MANIFEST_DIR` when it runs a test, so
/// this is read at run time: a test binary reused from a shared `CARGO_TARGET_DIR` that another
/// checkout built would otherwise read that checkout's files through the path compiled into it.
pub fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// A file under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Self {
        Dir { tmp: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// A command for the maestro binary, run inside this folder.
    pub fn maestro(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_maestro"));
        c.current_dir(self.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("MAESTRO_") || k == "BURN_DEVICE" {
                c.env_remove(k);
            }
        }
        c
    }
}

pub struct Run {
    pub cmd: String,
    pub out: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    fn context(&self) -> String {
        format!("command: {}\nexit: {:?}\n--- stdout\n{}--- stderr\n{}", self.cmd, self.out.status, self.stdout(), self.stderr())
    }
    pub fn success(self) -> Self {
        assert!(self.out.status.success(), "expected success\n{}", self.context());
        self
    }
    pub fn code_is(self, code: i32) -> Self {
        assert_eq!(self.code(), code, "unexpected exit code\n{}", self.context());
        self
    }
    pub fn stdout_has(self, s: &str) -> Self {
        assert!(self.stdout().contains(s), "stdout lacks {s:?}\n{}", self.context());
        self
    }
    pub fn stderr_has(self, s: &str) -> Self {
        assert!(self.stderr().contains(s), "stderr lacks {s:?}\n{}", self.context());
        self
    }
}

pub fn run(mut c: Command) -> Run {
    let cmd = format!("{:?}", c);
    let out = c.output().expect("run maestro");
    Run { cmd, out }
}

/// Fail with a clear message when the demo dataset is missing.
pub fn require_fashion_mnist() {
    assert!(
        Path::new(FASHION_MNIST).join("train-images-idx3-ubyte.gz").is_file(),
        "these tests read Fashion-MNIST from {FASHION_MNIST}: sudo apt-get install dataset-fashion-mnist (scripts/test does it)"
    );
}

/// An ImageFolder tree: `classes` x `per_class` small PNGs in train and `val_per_class` in val.
pub fn image_tree(root: &Path, classes: usize, per_class: usize, val_per_class: usize) {
    for (split, n) in [("train", per_class), ("val", val_per_class)] {
        for c in 0..classes {
            let d = root.join(split).join(format!("class_{c:03}"));
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                let img = image::RgbImage::from_pixel(8, 6, image::Rgb([c as u8, i as u8, 7]));
                img.save(d.join(format!("img_{i:04}.png"))).unwrap();
            }
        }
    }
}

/// Every event of a run folder's journal (an empty list before the runner wrote one).
pub fn journal(dir: &Dir, run: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(run).join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub fn events<'a>(j: &'a [serde_json::Value], event: &str) -> Vec<&'a serde_json::Value> {
    j.iter().filter(|e| e["event"] == event).collect()
}

/// Poll `f` until it holds; fail the test after `limit`.
pub fn wait_for(what: &str, limit: std::time::Duration, mut f: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}
