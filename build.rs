//! Build script: embed an rpath to the libpython that pyo3 was configured against, so the
//! `push` binary loads that exact interpreter (the one `pip install` targets) from a plain
//! shell and from `cargo test`, without LD_LIBRARY_PATH, and never a different system copy.

fn main() {
    // The configuration pyo3-ffi's build script resolved (PYO3_PYTHON, else python3 on PATH).
    if let Some(dir) = pyo3_build_config::get().lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
