//! Files and modules: the local path of a `file:` URI, the app root a file belongs to and the
//! dotted module name the node knows it by.

use std::path::{Path, PathBuf};

use tower_lsp_server::ls_types::Uri;

/// The local path of a `file:` URI; None for other schemes (`untitled:` buffers and the like).
pub fn file_path(uri: &Uri) -> Option<PathBuf> {
    if !uri.scheme().as_str().eq_ignore_ascii_case("file") {
        return None;
    }
    uri.to_file_path().map(|p| p.into_owned())
}

/// The manifest that marks an app's root directory.
pub const MANIFEST: &str = "push.ron";

/// The app root of `file`: the nearest ancestor holding `push.ron`, else the workspace root
/// (when the file is inside it), else the file's own directory.
pub fn app_root(file: &Path, workspace: Option<&Path>) -> PathBuf {
    let dir = file.parent().unwrap_or(file);
    for ancestor in dir.ancestors() {
        if ancestor.join(MANIFEST).is_file() {
            return ancestor.to_path_buf();
        }
        if Some(ancestor) == workspace {
            break;
        }
    }
    match workspace {
        Some(ws) if file.starts_with(ws) => ws.to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// The module name of `file` under `root`: `pkg/mod.py` → `pkg.mod`, `pkg/__init__.py` →
/// `pkg`. None when the file is not a `.py` file under `root`.
pub fn module_name(file: &Path, root: &Path) -> Option<String> {
    let rel = file.strip_prefix(root).ok()?;
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    let stem = last.strip_suffix(".py")?;
    if stem != "__init__" {
        parts.push(stem.to_string());
    }
    (!parts.is_empty() && parts.iter().all(|p| !p.is_empty() && !p.contains('.')))
        .then(|| parts.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names() {
        let root = Path::new("/w/app");
        let name = |p: &str| module_name(Path::new(p), root);
        assert_eq!(name("/w/app/app.py").as_deref(), Some("app"));
        assert_eq!(name("/w/app/pkg/mod.py").as_deref(), Some("pkg.mod"));
        assert_eq!(name("/w/app/pkg/__init__.py").as_deref(), Some("pkg"));
        assert_eq!(name("/w/app/__init__.py"), None);
        assert_eq!(name("/w/app/notes.txt"), None);
        assert_eq!(name("/elsewhere/x.py"), None);
    }

    #[test]
    fn app_root_is_the_nearest_manifest_else_the_workspace() {
        let dir = std::env::temp_dir().join(format!("push-lsp-paths-{}", std::process::id()));
        let app = dir.join("apps/web");
        std::fs::create_dir_all(app.join("pkg")).expect("dirs");
        std::fs::write(app.join(MANIFEST), "(entry: \"app\")").expect("manifest");
        assert_eq!(app_root(&app.join("pkg/m.py"), Some(&dir)), app);
        assert_eq!(app_root(&dir.join("apps/x.py"), Some(&dir)), dir);
        assert_eq!(app_root(&dir.join("apps/x.py"), None), dir.join("apps"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
