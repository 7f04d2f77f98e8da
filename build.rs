//! Build script: embed an rpath to the libpython that pyo3 was configured against, so the
//! `push` binary loads that exact interpreter (the one `pip install` targets) from a plain
//! shell and from `cargo test`, without LD_LIBRARY_PATH, and never a different system copy.

fn main() {
    let config = pyo3_build_config::get();
    if let Some(dir) = &config.lib_dir {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
