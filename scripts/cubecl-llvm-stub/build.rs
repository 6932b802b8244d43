//! Build script that `scripts/cubecl-llvm-stub/make` puts in place of cubecl-llvm's own.
//!
//! cubecl-llvm's build script downloads a prebuilt LLVM bundle from GitHub and links it. maestro's
//! CUDA build compiles its kernels as CUDA C++ through NVRTC (cubecl-cuda's `cpp` feature) and
//! never calls LLVM, but the crate is still linked. So each symbol the crate declares (listed in
//! `stub_symbols.txt` from llvm-sys's and cubecl-llvm's `extern "C"` declarations) is defined
//! here as a C function that reports its name and aborts: a call that should never happen is
//! loud, and the build needs no network.
use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=stub_symbols.txt");
    let names = std::fs::read_to_string("stub_symbols.txt").expect("stub_symbols.txt beside build.rs");
    let mut c = String::from(
        "#include <stdio.h>\n#include <stdlib.h>\n\
         static void maestro_no_llvm(const char *symbol) {\n\
         \x20   fprintf(stderr, \"maestro: %s called, but this CUDA build links no LLVM \
         (kernels go through NVRTC)\\n\", symbol);\n\
         \x20   abort();\n}\n",
    );
    for name in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
        writeln!(c, "void {name}(void) {{ maestro_no_llvm(\"{name}\"); }}").unwrap();
    }
    let file = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("no_llvm.c");
    std::fs::write(&file, c).unwrap();
    cc::Build::new().file(&file).warnings(false).flag_if_supported("-w").compile("maestro_no_llvm");
}
