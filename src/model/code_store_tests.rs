//! Unit tests of the code store: sources, wheels, limits, commits, joins and inline blobs
//! ([`super`]).

use super::*;

#[test]
fn sources_must_be_utf8_text_without_nul_bytes() {
    assert!(check_source("app.py", b"x = 1\n").is_ok());
    let e = check_source("lib/junk.py", b"x = 1\n\xff\xfe")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lib/junk.py is not UTF-8") && e.contains("offset 6"),
        "{e}"
    );
    let e = check_source("nul.py", b"x = 1\0").unwrap_err().to_string();
    assert!(e.contains("nul.py contains a NUL byte at offset 5"), "{e}");
}

#[test]
fn wheels_make_the_environment_hash() {
    let mut tree = BTreeMap::from([("app.py".to_string(), "a1".to_string())]);
    assert_eq!(env_hash(&tree), None);
    tree.insert(".wheels/b-1.0-py3-none-any.whl".into(), "bb".into());
    tree.insert(".wheels/a-1.0-py3-none-any.whl".into(), "cc".into());
    tree.insert("z.py".into(), "zz".into());
    assert_eq!(
        wheels(&tree),
        vec![
            ("a-1.0-py3-none-any.whl".to_string(), "cc".to_string()),
            ("b-1.0-py3-none-any.whl".to_string(), "bb".to_string())
        ]
    );
    let one = env_hash(&tree).unwrap();
    // Same wheels under other names: same environment; another wheel: another one.
    let renamed = BTreeMap::from([
        (".wheels/x.whl".to_string(), "bb".to_string()),
        (".wheels/y.whl".to_string(), "cc".to_string()),
    ]);
    assert_eq!(env_hash(&renamed).unwrap(), one);
    tree.insert(".wheels/b-1.0-py3-none-any.whl".into(), "dd".into());
    assert_ne!(env_hash(&tree).unwrap(), one);
    assert!(is_wheel_path(".wheels/x.whl") && !is_wheel_path("wheels.py"));
}

#[test]
fn a_version_holds_at_most_max_files() {
    let half = MAX_APP_BYTES / 2;
    assert!(check_app_size([("a.py", half), ("b.html", half)]).is_ok());
    let e = check_app_size([("a.py", half), ("b.html", half), ("c.json", 1)])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("c.json") && e.contains(&MAX_APP_BYTES.to_string()),
        "{e}"
    );
    assert!(check_file_count(MAX_FILES).is_ok());
    let e = check_file_count(MAX_FILES + 1).unwrap_err().to_string();
    assert!(e.contains(&format!("more than the {MAX_FILES}")), "{e}");
}

fn store_with(files: &[(&str, &str)]) -> (CodeStore, BTreeMap<String, String>) {
    let mut store = CodeStore::default();
    let blobs: Vec<ByteBuf> = files
        .iter()
        .map(|(_, s)| ByteBuf::from(s.as_bytes().to_vec()))
        .collect();
    store.put_blobs(&blobs);
    let tree = files
        .iter()
        .map(|(p, s)| (p.to_string(), blob_hash(s.as_bytes())))
        .collect();
    (store, tree)
}

#[test]
fn commit_rollback_and_unchanged() {
    let (mut store, tree1) = store_with(&[("app.py", "x = 1\n")]);
    let out = store.commit("a", &tree1, "one", "me", 1, true).unwrap();
    assert_eq!(
        out,
        CommitOutcome::Created {
            version: 1,
            activated: true
        }
    );
    assert_eq!(
        store.commit("a", &tree1, "again", "me", 2, true).unwrap(),
        CommitOutcome::Unchanged { head: 1 }
    );
    store.put_blobs(&[ByteBuf::from(b"x = 2\n".to_vec())]);
    let tree2 = BTreeMap::from([("app.py".to_string(), blob_hash(b"x = 2\n"))]);
    store.commit("a", &tree2, "two", "me", 3, true).unwrap();
    assert_eq!(store.heads(), vec![("a".to_string(), 2)]);
    let text =
        |t: &str| BTreeMap::from([("app.py".to_string(), ByteBuf::from(t.as_bytes().to_vec()))]);
    let diff = diff(1, &text("x = 1\n"), 2, &text("x = 2\n"));
    assert!(diff.contains("-x = 1") && diff.contains("+x = 2"), "{diff}");
    assert_eq!(store.activate("a", None).unwrap(), (Some(2), 1));
    let err = store.activate("a", None).unwrap_err();
    assert!(
        err.message.contains("nothing to roll back"),
        "{}",
        err.message
    );
    let err = store.activate("a", Some(9)).unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(store.app("a").unwrap().head, Some(1));
}

#[test]
fn commit_refuses_missing_blobs_and_bad_paths() {
    let (mut store, mut tree) = store_with(&[("ok.py", "")]);
    tree.insert("../evil.py".into(), blob_hash(b""));
    assert!(store.commit("a", &tree, "", "", 0, true).is_err());
    let tree = BTreeMap::from([("m.py".to_string(), "00".repeat(32))]);
    let err = store.commit("a", &tree, "", "", 0, true).unwrap_err();
    assert!(err.message.contains("not in the code store"));
    assert!(store.app("a").is_none_or(|a| a.versions.is_empty()));
}

#[test]
fn a_joined_blob_replaces_its_pieces() {
    let mut store = CodeStore::default();
    // A piece larger than INLINE_MAX is a file (only its size is here), a small last
    // piece stays inline until the join forgets it.
    let (big, tail) = (vec![7u8; INLINE_MAX as usize + 1], b"cd".to_vec());
    store.put_blobs(&[ByteBuf::from(big.clone()), ByteBuf::from(tail.clone())]);
    let pieces = vec![blob_hash(&big), blob_hash(&tail)];
    assert!(store.inline_bytes(&pieces[0]).is_none());
    assert_eq!(
        store.inline_bytes(&pieces[1]).map(|b| b.to_vec()),
        Some(tail)
    );
    let size = INLINE_MAX + 3;
    let whole = blob_hash(&[&big[..], b"cd"].concat());
    let err = store.join_blob(&whole, size + 1, &pieces).unwrap_err();
    assert!(
        err.message
            .contains(&format!("hold {size} bytes, not {}", size + 1)),
        "{}",
        err.message
    );
    let err = store
        .join_blob(&whole, size, &[pieces[0].clone(), "00".repeat(32)])
        .unwrap_err();
    assert!(err.message.contains("upload it again"), "{}", err.message);
    assert_eq!(store.join_blob(&whole, size, &pieces).unwrap(), 1);
    assert_eq!(store.blob_size(&whole), Some(size));
    assert!(!store.has_blob(&pieces[0]) && !store.has_blob(&pieces[1]));
    assert!(store.inline_bytes(&pieces[1]).is_none() && store.inline_bytes(&whole).is_none());
    // A blob small enough to be inline is uploaded whole, never joined.
    store.put_blobs(&[ByteBuf::from(b"ab".to_vec()), ByteBuf::from(b"ef".to_vec())]);
    let err = store
        .join_blob(
            &blob_hash(b"abef"),
            4,
            &[blob_hash(b"ab"), blob_hash(b"ef")],
        )
        .unwrap_err();
    assert!(err.message.contains("upload whole"), "{}", err.message);
    let bytes = |t: &[u8]| BTreeMap::from([("i.png".to_string(), ByteBuf::from(t.to_vec()))]);
    let d = diff(1, &bytes(b"\x89PNG\0"), 2, &bytes(b"\x89PNG\x01"));
    assert_eq!(d, "Binary files v1/i.png and v2/i.png differ\n");
}

#[test]
fn small_blobs_stay_inline_and_large_ones_are_sizes_only() {
    let mut store = CodeStore::default();
    let small = vec![1u8; INLINE_MAX as usize];
    let large = vec![2u8; INLINE_MAX as usize + 1];
    assert_eq!(
        store.put_blobs(&[ByteBuf::from(small.clone()), ByteBuf::from(large.clone())]),
        2
    );
    let (s, l) = (blob_hash(&small), blob_hash(&large));
    assert_eq!(
        store.inline_bytes(&s).map(|b| b.to_vec()),
        Some(small.clone())
    );
    assert!(store.inline_bytes(&l).is_none());
    assert_eq!(store.blob_size(&l), Some(INLINE_MAX + 1));
    assert!(!store.needs_move());

    // A state of formats 1 to 3 held every blob inline and no sizes: only the large ones
    // leave, the small ones get their sizes.
    let mut old = CodeStore::default();
    old.inline_blob(&s, ByteBuf::from(small.clone()));
    old.inline_blob(&l, ByteBuf::from(large));
    assert!(old.needs_move());
    let moved = old.take_large_blobs();
    assert_eq!(moved.keys().collect::<Vec<_>>(), vec![&l]);
    assert_eq!(old.blob_size(&s), Some(INLINE_MAX));
    assert!(old.inline_bytes(&s).is_some() && old.inline_bytes(&l).is_none());
    old.record_blob(&l, INLINE_MAX + 1);
    assert!(!old.needs_move());
}
