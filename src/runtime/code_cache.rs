//! The runtime's own Python modules (`bootstrap.py`, `push.py`, …): their sources, run in
//! order at a worker's start from code objects compiled once per build and Python and kept
//! (marshal) in the node's data directory, so a worker starts without compiling ~130 KB of
//! source — about 20 ms of each worker's start-up, which a deploy gate's fresh worker and
//! every restart wait for.
//!
//! A cache file is named by the Python (its cache tag, bytecode magic number and optimisation
//! level) and a hash of the sources, so another build or Python never reads it. One that does
//! not load (cut short, foreign) is compiled afresh and replaced; one that cannot be written
//! costs only the compile.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyModule, PyTuple};

/// The environment variable naming the cache directory (set by the node for its workers).
pub const CACHE_DIR_VAR: &str = "PUSH_CODE_CACHE";

/// One embedded module: its source, the file name its tracebacks show, its module name.
struct Source {
    text: &'static str,
    file: &'static str,
    name: &'static str,
}

/// The embedded modules in the order they run: each is registered before the next runs
/// (push.py imports the bootstrap, session.py and tasks.py import push).
const MODULES: [Source; 9] = [
    source(include_str!("logs.py"), "<push>/logs.py", "_push_logs"),
    source(
        include_str!("routes.py"),
        "<push>/routes.py",
        "_push_routes",
    ),
    source(include_str!("files.py"), "<push>/files.py", "_push_files"),
    source(include_str!("web.py"), "<push>/web.py", "_push_web"),
    source(
        include_str!("bootstrap.py"),
        "<push>/bootstrap.py",
        BOOTSTRAP,
    ),
    source(
        include_str!("postmortem.py"),
        "<push>/postmortem.py",
        "_push_pm",
    ),
    source(include_str!("push.py"), "<push>/push.py", "push"),
    source(
        include_str!("session.py"),
        "<push>/session.py",
        "_push_session",
    ),
    source(include_str!("tasks.py"), "<push>/tasks.py", "_push_tasks"),
];

/// The bootstrap's module name.
const BOOTSTRAP: &str = "_push_runtime";

const fn source(text: &'static str, file: &'static str, name: &'static str) -> Source {
    Source { text, file, name }
}

/// Runs the runtime's modules in order, each put in `sys.modules` before the next runs, from
/// the cache in the folder [`CACHE_DIR_VAR`] names when it holds this build's; returns the
/// bootstrap module.
pub fn run_modules(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let modules = py.import("sys")?.getattr("modules")?;
    let cache = std::env::var_os(CACHE_DIR_VAR).map(PathBuf::from);
    let codes = code_objects(py, cache.as_deref(), &MODULES)?;
    let mut boot = None;
    for (code, source) in codes.iter().zip(&MODULES) {
        let name = std::ffi::CString::new(source.name)?;
        let file = std::ffi::CString::new(source.file)?;
        // SAFETY: the GIL is held; `code` is a code object (compiled or checked by
        // `code_objects`), the strings outlive the call, and the new reference returned is
        // owned by the Bound.
        let module = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                pyo3::ffi::PyImport_ExecCodeModuleEx(name.as_ptr(), code.as_ptr(), file.as_ptr()),
            )?
        };
        modules.set_item(source.name, &module)?;
        if source.name == BOOTSTRAP {
            boot = Some(module.cast_into::<PyModule>()?);
        }
    }
    boot.ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("no bootstrap module"))
}

/// A hash of every module's name and text: this build's sources.
fn sources_hash(sources: &[Source]) -> u64 {
    // `DefaultHasher::new()` has fixed keys: the same build always gets the same hash, and
    // another build at worst another file name (then a compile).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for s in sources {
        (s.name, s.file, s.text).hash(&mut h);
    }
    h.finish()
}

/// The cache file for `sources` under this Python, in `dir`; its name's prefix up to the hash
/// is shared by every build's file for this Python.
fn cache_file(py: Python<'_>, dir: &Path, sources: &[Source]) -> PyResult<(PathBuf, String)> {
    let sys = py.import("sys")?;
    let tag: String = sys
        .getattr("implementation")?
        .getattr("cache_tag")?
        .extract::<Option<String>>()?
        .unwrap_or_else(|| "python".into());
    let optimize: i64 = sys.getattr("flags")?.getattr("optimize")?.extract()?;
    let magic: Vec<u8> = py
        .import("_frozen_importlib_external")?
        .getattr("MAGIC_NUMBER")?
        .extract()?;
    let magic: String = magic.iter().map(|b| format!("{b:02x}")).collect();
    let prefix = format!("runtime-{tag}-{magic}-o{optimize}-");
    let name = format!("{prefix}{:016x}.marshal", sources_hash(sources));
    Ok((dir.join(name), prefix))
}

/// The code objects of `sources` from the marshal data in `bytes`, if it holds exactly them.
fn loaded<'py>(
    py: Python<'py>,
    bytes: &[u8],
    sources: &[Source],
) -> Option<Vec<Bound<'py, PyAny>>> {
    let value = py
        .import("marshal")
        .and_then(|m| m.getattr("loads"))
        .and_then(|loads| loads.call1((PyBytes::new(py, bytes),)))
        .ok()?;
    let tuple = value.cast_into::<PyTuple>().ok()?;
    if tuple.len() != sources.len() {
        return None;
    }
    let codes: Vec<Bound<'py, PyAny>> = tuple.iter().collect();
    let all_match = codes.iter().zip(sources).all(|(code, source)| {
        code.getattr("co_filename")
            .and_then(|f| f.extract::<String>())
            .is_ok_and(|f| f == source.file)
    });
    all_match.then_some(codes)
}

/// Compiles `sources` as the interpreter would import them.
fn compiled<'py>(py: Python<'py>, sources: &[Source]) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let compile = py.import("builtins")?.getattr("compile")?;
    sources
        .iter()
        .map(|s| compile.call1((s.text, s.file, "exec", 0, true)))
        .collect()
}

/// Writes `codes` to `path` whole or not at all (a temporary file renamed into place), and
/// removes this Python's files of other builds.
fn store(py: Python<'_>, path: &Path, prefix: &str, codes: &[Bound<'_, PyAny>]) -> PyResult<()> {
    let bytes: Vec<u8> = py
        .import("marshal")?
        .getattr("dumps")?
        .call1((PyTuple::new(py, codes)?,))?
        .extract()?;
    let write = || -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, path)?;
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(prefix) && entry.path() != path && name.ends_with(".marshal") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    };
    if let Err(e) = write() {
        tracing::debug!(path = %path.display(), "cannot cache the runtime's compiled modules: {e}");
    }
    Ok(())
}

/// The code objects of `sources`, in order: from the cache in `dir` when it holds this build's
/// for this Python, else compiled (and cached there for the next worker).
fn code_objects<'py>(
    py: Python<'py>,
    dir: Option<&Path>,
    sources: &[Source],
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let Some(dir) = dir else {
        return compiled(py, sources);
    };
    let (path, prefix) = cache_file(py, dir, sources)?;
    if let Some(codes) = std::fs::read(&path)
        .ok()
        .and_then(|bytes| loaded(py, &bytes, sources))
    {
        return Ok(codes);
    }
    let codes = compiled(py, sources)?;
    store(py, &path, &prefix, &codes)?;
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCES: [Source; 2] = [
        Source {
            text: "A = 1\n",
            file: "<push>/a.py",
            name: "_a",
        },
        Source {
            text: "def b():\n    return 2\n",
            file: "<push>/b.py",
            name: "_b",
        },
    ];

    fn names(codes: &[Bound<'_, PyAny>]) -> Vec<String> {
        codes
            .iter()
            .map(|c| c.getattr("co_filename").unwrap().extract().unwrap())
            .collect()
    }

    #[test]
    fn compiled_once_then_loaded_and_a_damaged_file_is_compiled_again() {
        let dir = tempfile::tempdir().unwrap();
        Python::initialize();
        Python::attach(|py| {
            let codes = code_objects(py, Some(dir.path()), &SOURCES).unwrap();
            assert_eq!(names(&codes), ["<push>/a.py", "<push>/b.py"]);
            let files: Vec<PathBuf> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert_eq!(files.len(), 1, "{files:?}");
            let (path, _) = cache_file(py, dir.path(), &SOURCES).unwrap();
            assert_eq!(files[0], path);
            let bytes = std::fs::read(&path).unwrap();
            assert!(loaded(py, &bytes, &SOURCES).is_some());
            // Another build's sources do not take this file for theirs.
            assert!(loaded(py, &bytes, &SOURCES[..1]).is_none());
            // Cut short: compiled again, and the file made whole.
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
            let codes = code_objects(py, Some(dir.path()), &SOURCES).unwrap();
            assert_eq!(names(&codes), ["<push>/a.py", "<push>/b.py"]);
            assert_eq!(std::fs::read(&path).unwrap(), bytes);
        });
    }

    #[test]
    fn another_builds_file_is_replaced_and_an_unwritable_directory_only_compiles() {
        let dir = tempfile::tempdir().unwrap();
        Python::initialize();
        Python::attach(|py| {
            let (path, prefix) = cache_file(py, dir.path(), &SOURCES).unwrap();
            let old = dir.path().join(format!("{prefix}0000000000000000.marshal"));
            std::fs::write(&old, b"old").unwrap();
            code_objects(py, Some(dir.path()), &SOURCES).unwrap();
            assert!(path.exists());
            assert!(!old.exists(), "the other build's file is removed");
            // A file where the directory should be: nothing is cached, the code still comes.
            let blocked = dir.path().join("blocked");
            std::fs::write(&blocked, b"").unwrap();
            let codes = code_objects(py, Some(&blocked.join("cache")), &SOURCES).unwrap();
            assert_eq!(codes.len(), 2);
        });
    }
}
