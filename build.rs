//! Build script: embed an rpath to the libpython that pyo3 was configured against, so the
//! `push` binary loads that exact interpreter (the one `pip install` targets) from a plain
//! shell and from `cargo test`, without LD_LIBRARY_PATH, and never a different system copy.

fn main() {
    // The configuration pyo3-ffi's build script resolved (PYO3_PYTHON, else python3 on PATH).
    let config = pyo3_build_config::get();
    if let Some(dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    // `push --version` names the interpreter it embeds (tests compare it with the running one).
    println!("cargo:rustc-env=PUSH_PYTHON_VERSION={}", config.version());
    println!(
        "cargo:rustc-env=PUSH_PYTHON_EXECUTABLE={}",
        config.executable().unwrap_or("an unknown interpreter")
    );
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
