//! Release builds link the functions a request runs next to each other.
//!
//! Every request is a new process, so every page of code it touches is a page fault, and the
//! linker otherwise scatters a request's few hundred functions over all of the binary's code
//! (28 faults, one per 64 kB the kernel maps at a time). `link/hot-text.ld` names them, and
//! its `INSERT` puts them in a section of their own ahead of the rest; the default layout is
//! otherwise unchanged. A name the build does not have is skipped, so a stale list costs
//! speed, never correctness. `cargo bench --bench hot_text -- --write` regenerates the list
//! (names carry the target in their hashes: the list is made for the static musl build).

use std::env;
use std::path::Path;

fn main() {
    let script = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("link/hot-text.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    let linux = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    if linux && release && script.exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
    }
}
