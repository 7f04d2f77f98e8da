//! `push export VERSION DIR`: a version's files come back byte for byte as deployed; a
//! non-empty directory and a missing version or app are refused with what to do.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::cluster::{fails, ok};
use crate::support::Cluster;

/// Every file under `dir`, by `/`-separated relative path.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(dir).expect("inside").to_string_lossy();
            out.insert(rel.replace('\\', "/"), std::fs::read(&path).expect("read"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_back_the_bytes_that_were_deployed() {
    let cluster = Cluster::start(1).await;
    let app = cluster.dir.path().join("app");
    let files: [(&str, &[u8]); 5] = [
        ("app.py", b"import pkg\nfrom pkg.sub import deep\n\nx = deep.caf\xc3\xa9\n"),
        // CRLF line ends, a tab and no final newline.
        (
            "pkg/__init__.py",
            b"# -*- coding: utf-8 -*-\r\nname = 'pkg'\r\nif True:\r\n\tpass",
        ),
        // Non-ASCII identifiers and text, control characters in a comment, a lone CR.
        (
            "pkg/sub/deep.py",
            "caf\u{e9} = \"\u{65e5}\u{672c}\u{8a9e} \u{2713} \u{1f389}\"\n# \u{1}\u{7}\u{1b}[0m \u{c} end\rz = 1\n"
                .as_bytes(),
        ),
        ("pkg/sub/__init__.py", b""),
        ("push.ron", b"// the manifest\n(entry: \"app\")\n"),
    ];
    for (path, bytes) in files {
        let target = app.join(path);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::write(&target, bytes).expect("write");
    }
    // Text files deploy beside the code and come back; hidden files stay at home.
    std::fs::write(app.join("notes.txt"), "deployed too").expect("write");
    std::fs::write(app.join(".env"), "kept at home").expect("write");
    let a1 = cluster.addr(1);
    ok(&cluster.cli(&["deploy", app.to_str().expect("utf8"), "--to", &a1]));

    let out_dir = cluster.dir.path().join("exported");
    let out = ok(&cluster.cli(&["export", "1", out_dir.to_str().expect("utf8"), "--to", &a1]));
    assert!(out.contains("exported main@v1: 6 files"), "{out}");
    let mut deployed: BTreeMap<String, Vec<u8>> = files
        .iter()
        .map(|(p, b)| (p.to_string(), b.to_vec()))
        .collect();
    deployed.insert("notes.txt".into(), b"deployed too".to_vec());
    assert_eq!(tree(&out_dir), deployed);

    // A directory with anything in it is refused unless --force, which writes over.
    let dir = out_dir.to_str().expect("utf8");
    let err = fails(&cluster.cli(&["export", "main@v1", dir, "--to", &a1]));
    assert!(
        err.contains("is not empty") && err.contains("pass --force"),
        "{err}"
    );
    std::fs::write(out_dir.join("app.py"), "changed locally").expect("write");
    ok(&cluster.cli(&["export", "main@v1", dir, "--force", "--to", &a1]));
    assert_eq!(tree(&out_dir), deployed);

    // A version or app that does not exist: named, with what exists; nothing is created.
    let missing = cluster.dir.path().join("missing");
    let m = missing.to_str().expect("utf8");
    let err = fails(&cluster.cli(&["export", "7", m, "--to", &a1]));
    assert!(
        err.contains("main has no version 7 (it has v1); see `push versions --app main`"),
        "{err}"
    );
    let err = fails(&cluster.cli(&["export", "web@2", m, "--to", &a1]));
    assert!(err.contains("no app named \"web\""), "{err}");
    let err = fails(&cluster.cli(&["export", "latest", m, "--to", &a1]));
    assert!(err.contains("not VERSION or APP@VERSION"), "{err}");
    assert!(!missing.exists());
}

/// A version bigger than one reply (a 20 MiB binary file beside the code) exports in parts,
/// through a node that may be a follower, and comes back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_bigger_than_one_reply_exports_in_parts() {
    let cluster = Cluster::start(3).await;
    let app = cluster.dir.path().join("big");
    std::fs::create_dir_all(&app).expect("mkdir");
    std::fs::write(app.join("app.py"), "x = 1\n").expect("write");
    // Bytes no text check accepts (a NUL at 0), 20 MiB: over the 16 MiB frame limit.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let model: Vec<u8> = (0..20 << 20)
        .map(|i| {
            if i == 0 {
                return 0;
            }
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(app.join("model.bin"), &model).expect("write");
    ok(&cluster.cli(&[
        "deploy",
        app.to_str().expect("utf8"),
        "--to",
        &cluster.addr(1),
    ]));
    let out_dir = cluster.dir.path().join("exported-big");
    let out = ok(&cluster.cli(&[
        "export",
        "1",
        out_dir.to_str().expect("utf8"),
        "--to",
        &cluster.addr(2),
    ]));
    assert!(out.contains("exported main@v1: 2 files"), "{out}");
    let back = tree(&out_dir);
    assert_eq!(back["app.py"], b"x = 1\n");
    assert!(back["model.bin"] == model, "model.bin came back different");
}
