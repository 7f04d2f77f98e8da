//! Large and binary files: a 20 MB binary file and a 12 MB wheel deploy through `push deploy`
//! (in pieces, with progress), land as blob files on all three nodes and on a node that joins
//! later through a snapshot, and are served (the binary file, by the app) and imported (the
//! wheel's data) byte-identical on every node; small files (a text file, a small binary one)
//! stay inline in the replicated state (no blob file for the text) and are served
//! byte-identical too, also by a node restarted with kill -9 and by the late joiner; a file
//! over the limit is refused by name.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use push_protocol::{Op, Reply, Value};
use sha2::{Digest, Sha256};

use crate::support::cluster::{fails, ok, set};
use crate::support::http::wait_get;
use crate::support::Cluster;

const WAIT: Duration = Duration::from_secs(90);

/// Writes the wheel `bigpkg-1.0-py3-none-any.whl` into `argv[1]`: a package whose
/// `data.bin` holds `argv[2]` random bytes (seeded) and whose `DIGEST` is their SHA-256.
const MAKE_WHEEL: &str = r#"
import base64, hashlib, os, random, sys, zipfile
out, size = sys.argv[1], int(sys.argv[2])
data = random.Random(7).randbytes(size)
info = "bigpkg-1.0.dist-info"
init = b"import hashlib, os\nwith open(os.path.join(os.path.dirname(__file__), 'data.bin'), 'rb') as f:\n    DIGEST = hashlib.sha256(f.read()).hexdigest()\n"
files = {
    "bigpkg/__init__.py": init,
    "bigpkg/data.bin": data,
    f"{info}/METADATA": b"Metadata-Version: 2.1\nName: bigpkg\nVersion: 1.0\n",
    f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: push-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
def digest(b):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b"=").decode()
record = "".join(f"{p},{digest(b)},{len(b)}\n" for p, b in files.items()) + f"{info}/RECORD,,\n"
files[f"{info}/RECORD"] = record.encode()
with zipfile.ZipFile(os.path.join(out, "bigpkg-1.0-py3-none-any.whl"), "w", zipfile.ZIP_STORED) as z:
    for p, b in files.items():
        z.writestr(zipfile.ZipInfo(p, (2020, 1, 1, 0, 0, 0)), b)
print(hashlib.sha256(data).hexdigest())
"#;

const APP: &str = r#"
import hashlib, os
import push
import bigpkg

HERE = os.path.dirname(__file__)

@push.route("GET", "/wheel")
def wheel():
    return bigpkg.DIGEST

def digest(*path):
    with open(os.path.join(HERE, *path), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()

@push.route("GET", "/photo")
def photo():
    return digest("static", "photo.bin")

@push.route("GET", "/icon")
def icon():
    return digest("static", "icon.bin")

@push.route("GET", "/notes")
def notes():
    return digest("notes.txt")
"#;

/// A small text file of the app: inline in the state, never a blob file.
const NOTES: &str = "Small files stay in the replicated state.\n";

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic bytes that are not UTF-8 (a xorshift stream starting with a PNG header).
fn binary(size: usize) -> Vec<u8> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut out = b"\x89PNG\r\n\x1a\n\xff\xfe\0".to_vec();
    while out.len() < size {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(size);
    out
}

/// The blob file of `hash` in node `id`'s data dir, if it is there.
fn blob_file(cluster: &Cluster, id: u64, hash: &str) -> Option<Vec<u8>> {
    let path: PathBuf = cluster
        .data_dir(id)
        .join("state/blobs")
        .join(&hash[..2])
        .join(hash);
    std::fs::read(path).ok()
}

/// Waits until `path` on node `id` answers 200 with `want`.
async fn wait_serves(cluster: &Cluster, id: u64, path: &str, want: &str) {
    wait_get(&cluster.http(id), path, WAIT, |r| {
        r.status == 200 && r.text() == want
    })
    .await
    .unwrap_or_else(|last| panic!("node {id} does not answer {path} with {want}: {last}"));
}

fn make_wheel(root: &Path, size: usize) -> (PathBuf, String) {
    let house = root.join("wheels");
    std::fs::create_dir_all(&house).expect("wheelhouse");
    let out = std::process::Command::new("python3")
        .args(["-c", MAKE_WHEEL])
        .arg(&house)
        .arg(size.to_string())
        .output()
        .expect("python3 builds the test wheel");
    assert!(
        out.status.success(),
        "building the wheel: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        house,
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_binary_files_and_wheels_reach_every_node_and_a_late_joiner() {
    // Snapshot often and keep no log behind it: the late joiner can only get the blobs
    // through a snapshot.
    let flags = [
        "--py-workers",
        "1",
        "--snapshot-every",
        "20",
        "--keep-logs",
        "0",
    ];
    let mut cluster = Cluster::start_with(3, &flags).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let (house, wheel_digest) = make_wheel(root, 12 << 20);
    let wheel = std::fs::read(house.join("bigpkg-1.0-py3-none-any.whl")).expect("wheel");
    let app = root.join("app");
    std::fs::create_dir_all(app.join("static")).expect("app dir");
    std::fs::write(app.join("app.py"), APP).expect("app.py");
    std::fs::write(app.join("requirements.txt"), "bigpkg\n").expect("reqs");
    let photo = binary(20 << 20);
    std::fs::write(app.join("static/photo.bin"), &photo).expect("photo");
    let icon = binary(3000);
    std::fs::write(app.join("static/icon.bin"), &icon).expect("icon");
    std::fs::write(app.join("notes.txt"), NOTES).expect("notes");
    let (icon_hash, notes_hash) = (sha256(&icon), sha256(NOTES.as_bytes()));
    let small_served = |cluster: &Cluster, id: u64| {
        assert!(
            blob_file(cluster, id, &notes_hash).is_none(),
            "node {id}: the small text file became a blob file"
        );
    };

    let out = cluster.cli(&[
        "deploy",
        app.to_str().expect("utf8"),
        "--wheels",
        house.to_str().expect("utf8"),
        "--to",
        &cluster.addr(1),
    ]);
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stdout.contains("deployed main@v1"), "{stdout}");
    assert!(stderr.contains("uploading (bytes)"), "{stderr}");
    assert!(stderr.contains("(100%)"), "{stderr}");

    let (photo_hash, wheel_hash) = (sha256(&photo), sha256(&wheel));
    for id in 1..=3 {
        wait_serves(&cluster, id, "/wheel", &wheel_digest).await;
        wait_serves(&cluster, id, "/photo", &photo_hash).await;
        wait_serves(&cluster, id, "/icon", &icon_hash).await;
        wait_serves(&cluster, id, "/notes", &notes_hash).await;
        small_served(&cluster, id);
        for (hash, bytes) in [(&photo_hash, &photo), (&wheel_hash, &wheel)] {
            let file = blob_file(&cluster, id, hash).expect("the blob file is on the node");
            assert!(file == **bytes, "node {id}: blob {hash} differs");
        }
    }

    // A node killed with kill -9 comes back serving every file byte-identical.
    cluster.kill(3);
    cluster.restart(3);
    for (path, want) in [
        ("/wheel", &wheel_digest),
        ("/photo", &photo_hash),
        ("/icon", &icon_hash),
        ("/notes", &notes_hash),
    ] {
        wait_serves(&cluster, 3, path, want).await;
    }
    small_served(&cluster, 3);

    // Enough writes for a snapshot past the deploy, then a fourth node joins.
    let client = cluster.client(1).await;
    for i in 0..40 {
        set(&client, "filler", &format!("k{i}"), Value::Int(i)).await;
    }
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let last = cluster
        .status(leader)
        .await
        .expect("status")
        .last_log_index
        .expect("log");
    let deadline = Instant::now() + WAIT;
    while cluster
        .status(leader)
        .await
        .and_then(|s| s.snapshot_index)
        .unwrap_or(0)
        < last.saturating_sub(20)
    {
        assert!(Instant::now() < deadline, "the leader built no snapshot");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.add_node(4, &flags);
    cluster.wait_voters(4, WAIT).await;
    cluster.wait_joined([4]).await;
    wait_serves(&cluster, 4, "/wheel", &wheel_digest).await;
    wait_serves(&cluster, 4, "/photo", &photo_hash).await;
    wait_serves(&cluster, 4, "/icon", &icon_hash).await;
    wait_serves(&cluster, 4, "/notes", &notes_hash).await;
    small_served(&cluster, 4);
    for (hash, bytes) in [(&photo_hash, &photo), (&wheel_hash, &wheel)] {
        let file = blob_file(&cluster, 4, hash).expect("the late joiner has the blob file");
        assert!(file == **bytes, "node 4: blob {hash} differs");
    }
    let log = std::fs::read_to_string(cluster.data_dir(4).join("node.log")).unwrap_or_default();
    assert!(
        log.contains("installed snapshot"),
        "node 4 did not install a snapshot:\n{log}"
    );

    // The diff of a binary file says so instead of printing bytes.
    let mut changed = photo.clone();
    changed[100] ^= 1;
    std::fs::write(app.join("static/photo.bin"), &changed).expect("photo");
    ok(&cluster.cli(&[
        "deploy",
        app.to_str().expect("utf8"),
        "--wheels",
        house.to_str().expect("utf8"),
        "--to",
        &cluster.addr(2),
    ]));
    let c = cluster.client(3).await;
    match c
        .call(Op::Diff {
            app: "main".into(),
            from: 1,
            to: 2,
        })
        .await
    {
        Ok(Reply::Diff(text)) => assert_eq!(
            text,
            "Binary files v1/static/photo.bin and v2/static/photo.bin differ\n"
        ),
        other => panic!("{other:?}"),
    }
    wait_serves(&cluster, 4, "/photo", &sha256(&changed)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_limit_is_refused_by_name() {
    let cluster = Cluster::start(1).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let app = tmp.path().join("app");
    std::fs::create_dir_all(app.join("media")).expect("dir");
    std::fs::write(app.join("app.py"), "x = 1\n").expect("app.py");
    // Sparse: the size is what the limit looks at, no disk is spent.
    let big = std::fs::File::create(app.join("media/huge.iso")).expect("create");
    big.set_len((256 << 20) + 1).expect("set_len");
    let err = fails(&cluster.cli(&[
        "deploy",
        app.to_str().expect("utf8"),
        "--to",
        &cluster.addr(1),
    ]));
    assert!(
        err.contains("not deployed: media/huge.iso is 268435457 bytes")
            && err.contains("the limit for one file is 268435456 bytes (256 MiB)"),
        "{err}"
    );
    let versions = ok(&cluster.cli(&["versions", "--to", &cluster.addr(1)]));
    assert!(versions.contains("no versions yet"), "{versions}");

    // A blob small enough to stay inline is uploaded whole: a join of pieces is refused,
    // saying so, and stores nothing.
    let c = cluster.client(1).await;
    let pieces = [b"ab".to_vec(), b"cd".to_vec()];
    let put = c
        .call(Op::PutBlobs {
            blobs: pieces
                .iter()
                .cloned()
                .map(push_protocol::ByteBuf::from)
                .collect(),
        })
        .await;
    assert!(put.is_ok(), "{put:?}");
    let whole = sha256(b"abcd");
    let err = c
        .call(Op::JoinBlob {
            hash: whole.clone(),
            size: 4,
            pieces: pieces.iter().map(|p| sha256(p)).collect(),
        })
        .await
        .expect_err("a small join is refused");
    assert_eq!(err.code(), Some(push_protocol::ErrorCode::Invalid), "{err}");
    assert!(
        err.to_string().contains("uploaded whole") && err.to_string().contains("PutBlobs"),
        "{err}"
    );
    match c
        .call(Op::MissingBlobs {
            hashes: vec![whole],
        })
        .await
    {
        Ok(Reply::Missing(missing)) => assert_eq!(missing.len(), 1, "{missing:?}"),
        other => panic!("{other:?}"),
    }
}
