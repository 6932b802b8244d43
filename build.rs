//! With the `tch` feature, compiles `csrc/torch_ops.cpp` (PyTorch operations tch does not bind)
//! against the libtorch that torch-sys found and links.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    println!("cargo:rerun-if-changed=csrc/torch_ops.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    // torch-sys passes its libtorch's lib folder on (`links = "tch"`); the headers sit beside it
    // unless LIBTORCH_INCLUDE says otherwise, as torch-sys reads it. The C++ ABI follows
    // torch-sys's LIBTORCH_CXX11_ABI (PyTorch's wheels since 2.7 use the new one, 1).
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys reports the libtorch it links");
    let root = match std::env::var("LIBTORCH_INCLUDE") {
        Ok(dir) => std::path::PathBuf::from(dir),
        Err(_) => std::path::Path::new(&lib).parent().expect("libtorch's lib folder has a parent").to_path_buf(),
    };
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // libtorch is a release build: its headers' debug-only checks rely on state that only
        // a debug build of libtorch keeps (RecordFunction::inputs() asserts on it).
        .define("NDEBUG", None)
        .file("csrc/torch_ops.cpp")
        .compile("maestro_torch_ops");
}
