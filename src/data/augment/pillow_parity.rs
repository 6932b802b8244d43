//! Every image operation of the training transform against Pillow's own output, byte for byte,
//! on textured RGB and grey images (`tests/fixtures/pillow_ops`, written by
//! `scripts/fixtures/pillow_ops.py` with the calls timm and torchvision make).

use std::path::{Path, PathBuf};

use super::{randaug, resize};
use crate::data::image::{Image, decode_file};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pillow_ops")
}

fn load(file: &str, channels: u8) -> Image {
    decode_file(&fixtures().join(file), channels).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn apply(op: &str, args: &[f64], img: &Image, fill: &[u8]) -> Image {
    let int = |i: usize| args[i] as usize;
    match op {
        "resize" => resize::resize_bicubic(img, int(0), int(1)),
        "crop_resize" => resize::resize_bicubic(&resize::crop(img, args[0] as i64, args[1] as i64, int(2), int(3)), int(4), int(4)),
        "hflip" => resize::hflip(img),
        "rotate" => randaug::rotate(img, args[0], fill),
        "affine" => randaug::affine(img, args.try_into().expect("six coefficients"), fill),
        "auto_contrast" => randaug::auto_contrast(img),
        "equalize" => randaug::equalize(img),
        "invert" => randaug::invert(img),
        "posterize" => randaug::posterize(img, args[0] as i32),
        "solarize" => randaug::solarize(img, args[0] as i32),
        "solarize_add" => randaug::solarize_add(img, args[0] as i32, args[1] as i32),
        "color" => randaug::color(img, args[0]),
        "contrast" => randaug::contrast(img, args[0]),
        "brightness" => randaug::brightness(img, args[0]),
        "sharpness" => randaug::sharpness(img, args[0]),
        other => panic!("cases.json names an unknown op `{other}`"),
    }
}

#[test]
fn every_op_gives_pillows_bytes() {
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(fixtures().join("cases.json")).unwrap()).unwrap();
    let fill_rgb: Vec<u8> = manifest["fill"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
    let cases = manifest["cases"].as_array().unwrap();
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let mut failed = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let channels = if name.starts_with("RGB-") { 3 } else { 1 };
        let fill = if channels == 3 { fill_rgb.clone() } else { vec![fill_rgb[0]] };
        let src = load(case["source"].as_str().unwrap(), channels);
        let want = load(case["file"].as_str().unwrap(), channels);
        let args: Vec<f64> = case["args"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let got = apply(case["op"].as_str().unwrap(), &args, &src, &fill);
        if (got.width, got.height) != (want.width, want.height) {
            failed.push(format!("{name}: {}x{} against Pillow's {}x{}", got.width, got.height, want.width, want.height));
        } else if got.pixels != want.pixels {
            let diff = got.pixels.iter().zip(&want.pixels).filter(|(a, b)| a != b).count();
            let worst = got.pixels.iter().zip(&want.pixels).map(|(&a, &b)| a.abs_diff(b)).max().unwrap_or(0);
            failed.push(format!("{name}: {diff} of {} values differ, by up to {worst}", got.pixels.len()));
        }
    }
    assert!(failed.is_empty(), "{} of {} cases differ from Pillow:\n{}", failed.len(), cases.len(), failed.join("\n"));
}
