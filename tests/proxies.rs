//! `maestro proxy build` / `proxy stats` / `validate` on generated ImageFolder trees and on the
//! real Fashion-MNIST.

mod util;
use std::path::Path;

use util::*;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn imagefolder_class_subset_and_fraction() {
    let dir = Dir::new();
    image_tree(&dir.join("data"), 6, 20, 3);
    let mut c = dir.maestro();
    c.args(["proxy", "build", "--dataset", "data", "--classes", "4", "--fraction", "0.25", "--seed", "3", "--out", "p.manifest"]);
    run(c).success().stdout_has("4 classes, 20 train / 12 val images");
    let mut c = dir.maestro();
    c.args(["proxy", "stats", "p.manifest"]);
    let r = run(c).success();
    // Four classes of 5 train (25% of 20) and 3 val images each.
    assert_eq!(r.stdout().lines().filter(|l| l.trim_end().ends_with("       5        3")).count(), 4, "{}", r.stdout());
    // A negative value is read as a value (and refused as one), not taken for a flag.
    let mut c = dir.maestro();
    c.args(["proxy", "build", "--dataset", "data", "--fraction", "-0.1", "--out", "n.manifest"]);
    run(c).code_is(2).stderr_has("fraction must be in (0, 1], got -0.1");
}

#[test]
fn materialized_imagefolder_proxy_is_links_in_label_order() {
    let dir = Dir::new();
    image_tree(&dir.join("data"), 5, 4, 2);
    let mut c = dir.maestro();
    c.args(["proxy", "build", "--dataset", "data", "--classes", "2", "--out", "p.manifest", "--materialize", "tree"]);
    run(c).success().stdout_has("materialized 8 train + 4 val images");
    let mut classes: Vec<String> =
        std::fs::read_dir(dir.join("tree/train")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    classes.sort();
    assert_eq!(classes.len(), 2);
    let link = dir.join("tree/train").join(&classes[0]).join("img_0000.png");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(image::open(&link).is_ok(), "the link resolves to the image");
    // A second materialize into the same folder is refused rather than mixed.
    let mut c = dir.maestro();
    c.args(["proxy", "build", "--dataset", "data", "--classes", "2", "--out", "p.manifest", "--materialize", "tree"]);
    run(c).code_is(2).stderr_has("not empty");
}

#[test]
fn corrupt_images_are_counted_and_reported_not_fatal() {
    let dir = Dir::new();
    image_tree(&dir.join("data"), 2, 3, 1);
    std::fs::write(dir.join("data/train/class_000/broken.jpg"), b"\xff\xd8 truncated jpeg").unwrap();
    std::fs::create_dir_all(dir.join("data/train/class_empty")).unwrap();
    let mut c = dir.maestro();
    c.args(["proxy", "build", "--dataset", "data", "--fraction", "1.0", "--out", "p.manifest"]);
    run(c).success().stderr_has("class_empty: class folder is empty");
    let mut c = dir.maestro();
    c.args(["proxy", "stats", "--decode", "p.manifest"]);
    run(c)
        .success()
        .stdout_has("decoded 8 images")
        .stderr_has("1 image(s) could not be read and were skipped")
        .stderr_has("broken.jpg");
}

#[test]
fn an_edited_manifest_is_refused() {
    let dir = Dir::new();
    image_tree(&dir.join("data"), 3, 4, 1);
    let mut c = dir.maestro();
    c.args(["proxy", "build", "--dataset", "data", "--classes", "2", "--out", "p.manifest"]);
    run(c).success();
    let text = read(&dir.join("p.manifest")).replacen("img_0000.png", "img_0009.png", 1);
    std::fs::write(dir.join("p.manifest"), text).unwrap();
    let mut c = dir.maestro();
    c.args(["proxy", "stats", "p.manifest"]);
    run(c).code_is(2).stderr_has("was edited or is damaged");
    // A device or a folder is no manifest (reading /dev/zero would never end).
    for not_a_file in ["/dev/zero", "data"] {
        let mut c = dir.maestro();
        c.args(["proxy", "stats", not_a_file]);
        run(c).code_is(2).stderr_has("not a regular file");
    }
}

#[test]
fn fashion_mnist_demo_proxies_have_the_expected_counts_and_are_reproducible() {
    require_fashion_mnist();
    let dir = Dir::new();
    let build = |args: &[&str]| {
        let mut c = dir.maestro();
        c.args(["proxy", "build", "--dataset", "fashion-mnist"]).args(args);
        run(c).success()
    };
    build(&["--classes", "5", "--seed", "0", "--out", "a/fmnist-5cls.manifest"]).stdout_has("5 classes, 30000 train / 5000 val images");
    build(&["--fraction", "0.1", "--seed", "0", "--out", "a/fmnist-10pct.manifest"]).stdout_has("10 classes, 6000 train / 10000 val images");
    build(&["--classes", "5", "--seed", "0", "--out", "b/fmnist-5cls.manifest"]);
    build(&["--fraction", "0.1", "--seed", "0", "--out", "b/fmnist-10pct.manifest"]);
    build(&["--classes", "5", "--seed", "1", "--out", "c/fmnist-5cls.manifest"]);
    build(&["--fraction", "0.1", "--seed", "1", "--out", "c/fmnist-10pct.manifest"]);
    for name in ["fmnist-5cls.manifest", "fmnist-10pct.manifest"] {
        let a = read(&dir.join("a").join(name));
        assert_eq!(a, read(&dir.join("b").join(name)), "{name}: same seed must give the same bytes");
        assert_ne!(a, read(&dir.join("c").join(name)), "{name}: another seed must give another draw");
    }
    let mut c = dir.maestro();
    c.args(["proxy", "stats", "a/fmnist-10pct.manifest"]);
    let r = run(c).success();
    assert_eq!(r.stdout().lines().filter(|l| l.trim_end().ends_with("     600     1000")).count(), 10, "{}", r.stdout());
}

#[test]
fn committed_demo_manifests_are_what_the_demo_study_builds() {
    require_fashion_mnist();
    let repo = util::repo();
    let dir = Dir::new();
    let mut c = dir.maestro();
    c.args(["proxy", "build", "--study"]).arg(repo.join("studies/demo.yaml")).args(["--out-dir", "out"]);
    run(c).success();
    for name in ["fmnist-5cls.manifest", "fmnist-10pct.manifest"] {
        assert_eq!(
            read(&dir.join("out").join(name)),
            read(&repo.join("proxies").join(name)),
            "proxies/{name} is stale: rebuild it with `maestro proxy build --study studies/demo.yaml`"
        );
    }
}

#[test]
fn materialized_fashion_mnist_is_pngs() {
    require_fashion_mnist();
    let dir = Dir::new();
    let mut c = dir.maestro();
    c.args(["proxy", "build", "--dataset", "fashion-mnist", "--classes", "2", "--fraction", "0.001", "--out", "p.manifest"])
        .args(["--materialize", "tree"]);
    run(c).success().stdout_has("materialized 12 train + 2000 val images");
    let class = std::fs::read_dir(dir.join("tree/train")).unwrap().next().unwrap().unwrap().path();
    let png = std::fs::read_dir(&class).unwrap().next().unwrap().unwrap().path();
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (28, 28));
}

#[test]
fn validate_prints_the_demo_plan() {
    require_fashion_mnist();
    let repo = util::repo();
    let dir = Dir::new();
    let mut c = dir.maestro();
    c.arg("validate").arg(repo.join("studies/demo.yaml"));
    run(c)
        .success()
        .stdout_has("fmnist-5cls")
        .stdout_has("5 classes, 30000 train / 5000 val images; 6 trials")
        .stdout_has("fmnist-10pct")
        .stdout_has("10 classes, 6000 train / 10000 val images; 6 trials")
        .stdout_has("search    12 trials in total")
        .stdout_has("ok");
}

#[test]
fn paper_study_plans_against_an_imagenet_shaped_tree() {
    // ImageNet's layout: 1000 class folders; a few images each is enough to plan (15: the
    // 10% proxy then holds 2 per class, 2000 images, a batch of 1024 and more).
    let dir = Dir::new();
    let root = dir.join("imagenet");
    for split in ["train", "val"] {
        for c in 0..1000 {
            let d = root.join(split).join(format!("n{:08}", 1_000_000 + c * 37));
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..if split == "train" { 15 } else { 1 } {
                std::fs::write(d.join(format!("n{c}_{i}.JPEG")), b"").unwrap();
            }
        }
    }
    let repo = util::repo();
    let text = read(&repo.join("studies/paper-vit-b.yaml")).replace("/data/imagenet", root.to_str().unwrap());
    dir.write("paper.yaml", &text);
    let mut c = dir.maestro();
    c.args(["validate", "paper.yaml"]);
    run(c)
        .success()
        .stdout_has("200 classes, 3000 train / 200 val images; 24 trials")
        .stdout_has("1000 classes, 2000 train / 1000 val images; 24 trials")
        .stdout_has("48 trials in total")
        .stdout_has("6 full-dataset run(s)");
}

#[test]
fn doctor_and_version() {
    let dir = Dir::new();
    let mut c = dir.maestro();
    c.arg("doctor");
    run(c).success().stdout_has("flex (CPU)").stdout_has("compiled in");
    let mut c = dir.maestro();
    c.arg("--version");
    run(c).success().stdout_has(env!("CARGO_PKG_VERSION"));
}

#[test]
fn a_proxy_the_study_rules_refuse_is_refused_on_the_command_line_too() {
    let dir = Dir::new();
    image_tree(&dir.join("data"), 3, 4, 0);
    let mut c = dir.maestro();
    c.args(["proxy", "build", "--dataset", "data", "--classes", "1", "--out", "p.manifest"]);
    run(c).code_is(2).stderr_has("--classes must be at least 2, got 1");
    // No validation image among the drawn classes: nothing to score a trial on.
    let mut c = dir.maestro();
    c.args(["proxy", "build", "--dataset", "data", "--classes", "2", "--out", "p.manifest"]);
    run(c).code_is(2).stderr_has("have no validation images");
    assert!(!dir.join("p.manifest").exists());
    // One class without validation images: built, with a warning that names it.
    image_tree(&dir.join("more"), 3, 4, 2);
    for f in std::fs::read_dir(dir.join("more/val/class_001")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let mut c = dir.maestro();
    c.args(["proxy", "build", "--dataset", "more", "--fraction", "0.5", "--out", "q.manifest"]);
    run(c).success().stderr_has("1 of its classes have no image in a split: class_001 (2 train, 0 val)");
}
