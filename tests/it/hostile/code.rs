//! Hostile code: evals printing 100 MB, recursion bombs, deeply nested results, deploys of
//! 10,000 files, of too many files or of binary junk, and an endless loop that is interrupted.

use super::*;

pub(super) fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

pub(super) async fn head(client: &Client, app: &str) -> Option<u64> {
    match client.call(Op::Versions { app: app.into() }).await {
        Ok(Reply::Versions { head, .. }) => head,
        other => panic!("versions: {other:?}"),
    }
}

/// Waits (up to 5 s) until the node `client` talks to has applied HEAD `want` of `app`.
pub(super) async fn wait_head(client: &Client, app: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while head(client, app).await != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{app} never reached HEAD v{want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(super) fn stderr_of_failure(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "push unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---- the cases ----

/// Runs `code` (which prints about 100 MB) on node `id` while sampling the node's RSS.
pub(super) async fn print_100_mb(ctx: &Ctx, id: u64, code: &str) {
    let pid = ctx.pids[id as usize - 1];
    let before = rss_kb(pid);
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kb(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let c = ctx.client(id).await;
    let started = Instant::now();
    let (out, _, r) = tokio::time::timeout(Duration::from_secs(20), eval(&c, None, code))
        .await
        .expect("the eval finished within 20 s");
    done.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!(out.len(), 1 << 20, "the first MiB is shown");
    let cut = r.truncated.expect("a cut note");
    assert!(
        cut.contains("stdout cut: 98") && cut.contains("bytes not shown after the first 1048576"),
        "{cut}"
    );
    let grew_mb = peak.load(Ordering::Relaxed).saturating_sub(before) / 1024;
    eprintln!(
        "{code:?}: {:?}, node RSS {} MB before, peak +{grew_mb} MB",
        started.elapsed(),
        before / 1024
    );
    assert!(grew_mb < 600, "the node's RSS grew by {grew_mb} MB");
}

pub(super) async fn eval_prints_100_mb_at_once(ctx: Arc<Ctx>, id: u64) {
    print_100_mb(&ctx, id, "print('x' * 100_000_000)").await;
}

pub(super) async fn eval_prints_100_mb_in_chunks(ctx: Arc<Ctx>, id: u64) {
    print_100_mb(&ctx, id, "for _ in range(100):\n    print('y' * 1_000_000)").await;
}

pub(super) async fn recursion_bomb(ctx: Arc<Ctx>, id: u64) {
    let c = ctx.client(id).await;
    let (_, _, r) = eval(&c, None, "def f(): return f()\nf()").await;
    let e = r.error.expect("RecursionError");
    assert_eq!(e.type_name, "RecursionError");
    assert!(
        e.formatted.contains("return f()")
            && e.formatted
                .contains("RecursionError: maximum recursion depth exceeded"),
        "{}",
        e.formatted
    );
}

pub(super) async fn recursion_limit_raised_to_a_million(ctx: Arc<Ctx>, id: u64) {
    let c = ctx.client(id).await;
    // Deep C recursion (repr of a nested list), which overflowed a 2 MiB thread stack and
    // aborted the node before the limit was capped.
    let code = "import sys\nsys.setrecursionlimit(10**6)\nx = []\nfor _ in range(200_000):\n    x = [x]\nrepr(x)";
    let (_, err, r) = eval(&c, None, code).await;
    assert!(
        err.contains("sys.setrecursionlimit(1000000) capped at 50000")
            && err.contains("make deep recursion iterative"),
        "{err}"
    );
    let e = r.error.expect("RecursionError");
    assert_eq!(e.type_name, "RecursionError", "{}", e.formatted);
    // And deep Python recursion.
    let code = "import sys\nsys.setrecursionlimit(10**6)\ndef g(n):\n    return g(n + 1) if n < 10**6 else n\ng(0)";
    let (_, _, r) = eval(&c, None, code).await;
    assert_eq!(r.error.expect("RecursionError").type_name, "RecursionError");
}

pub(super) async fn deeply_nested_result(ctx: Arc<Ctx>, id: u64) {
    let c = ctx.client(id).await;
    let (_, _, r) = eval(&c, None, "x=[]; [x := [x] for _ in range(100000)]; x").await;
    assert!(r.error.is_none(), "{r:?}");
    let value = r.value.expect("a value");
    assert!(
        value.starts_with("<repr failed: RecursionError: maximum recursion depth exceeded"),
        "{value}"
    );
    assert_eq!(r.type_name.as_deref(), Some("list"));
}

pub(super) async fn deploy_of_10_000_files(ctx: Arc<Ctx>, id: u64) {
    let app = ctx.dir.join("many");
    for i in 0..10_000 {
        let pkg = app.join(format!("pkg{}", i / 500));
        if i % 500 == 0 {
            std::fs::create_dir_all(&pkg).expect("dir");
            std::fs::write(pkg.join("__init__.py"), "").expect("write");
        }
        std::fs::write(pkg.join(format!("m{i}.py")), format!("VALUE = {i}\n")).expect("write");
    }
    std::fs::write(
        app.join("app.py"),
        "import push\nfrom pkg19 import m9999\n\n@push.route('GET', '/')\ndef index():\n    return str(m9999.VALUE)\n",
    )
    .expect("write");
    let started = Instant::now();
    let out = ctx.cli(&["deploy", app.to_str().expect("utf8"), "--to", ctx.addr(id)]);
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("deployed main@v1 (10021 files"), "{stdout}");
    assert!(
        stderr.contains("uploading (bytes)") && stderr.contains("(100%)"),
        "{stderr}"
    );
    // How long it took is a figure for the log, not a test (speed belongs in benches).
    eprintln!("deploy of 10,021 files took {took:?}");
    let c = ctx.client(id).await;
    wait_head(&c, "main", 1).await;
}

pub(super) async fn too_many_files(ctx: Arc<Ctx>, id: u64) {
    // A hostile client skips the CLI's check: the leader refuses before proposing.
    let tree = (0..20_001)
        .map(|i| (format!("m{i}.py"), format!("{i:064x}")))
        .collect();
    let c = ctx.client(id).await;
    let err = c
        .call(Op::Commit {
            app: "toomany".into(),
            tree,
            message: String::new(),
            author: "hostile".into(),
            activate: true,
        })
        .await
        .expect_err("too many files");
    assert_eq!(err.code(), Some(ErrorCode::Invalid), "{err}");
    assert!(
        err.to_string()
            .contains("20001 files is more than the 20000 one version may hold"),
        "{err}"
    );
    assert_eq!(head(&c, "toomany").await, None);
}

/// An app dir `label` with a good `app.py` and `name` holding `bytes`.
pub(super) fn junk_app(root: &Path, label: usize, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = root.join(format!("junk-{label}"));
    let file = dir.join(name);
    std::fs::create_dir_all(file.parent().expect("parent")).expect("dir");
    std::fs::write(dir.join("app.py"), "x = 1\n").expect("write");
    std::fs::write(file, bytes).expect("write");
    dir
}

pub(super) async fn deploys_of_binary_junk(ctx: Arc<Ctx>, id: u64) {
    let c = ctx.client(id).await;
    // A good first version, so there is a HEAD to keep.
    let good = ctx.dir.join("junk-good");
    std::fs::create_dir_all(&good).expect("dir");
    std::fs::write(good.join("app.py"), "x = 1\n").expect("write");
    let out = ctx.cli(&[
        "deploy",
        good.to_str().expect("utf8"),
        "--app",
        "junk",
        "--to",
        ctx.addr(id),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_head(&c, "junk", 1).await;

    // Random bytes (a fixed xorshift stream, so the case is the same on every run).
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("random.py", random, "random.py is not UTF-8 text"),
        (
            "lib/nul.py",
            b"x = 1\0\0\0\n".to_vec(),
            "lib/nul.py contains a NUL byte at offset 5",
        ),
        (
            "latin1.py",
            b"name = 'caf\xe9'\n".to_vec(),
            "latin1.py is not UTF-8 text (invalid byte at offset 11)",
        ),
    ];
    for (i, (name, bytes, want)) in cases.iter().enumerate() {
        let dir = junk_app(&ctx.dir, i, name, bytes);
        let err = stderr_of_failure(&ctx.cli(&[
            "deploy",
            dir.to_str().expect("utf8"),
            "--app",
            "junk",
            "--to",
            ctx.addr(id),
        ]));
        assert!(
            err.contains(&format!("not deployed: {want}")) && err.contains("binary file"),
            "{name}: {err}"
        );
    }
    // A hostile client skips the CLI: the leader's deploy gate refuses by name too.
    let blob = b"import os\0\n".to_vec();
    let hash = push::model::code_store::blob_hash(&blob);
    c.call(Op::PutBlobs {
        blobs: vec![ByteBuf::from(blob)],
    })
    .await
    .expect("put");
    let err = c
        .call(Op::Commit {
            app: "junk".into(),
            tree: [("app.py".to_string(), hash)].into_iter().collect(),
            message: String::new(),
            author: "hostile".into(),
            activate: true,
        })
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("deploy rejected: app.py contains a NUL byte at offset 9"),
        "{err}"
    );
    assert_eq!(head(&c, "junk").await, Some(1), "HEAD unchanged");
}

pub(super) async fn endless_loop_interrupted(ctx: Arc<Ctx>, id: u64) {
    let c = ctx.client(id).await;
    let s = match c.call(Op::SessionOpen).await.expect("open") {
        Reply::Session { id } => id,
        other => panic!("{other:?}"),
    };
    let looping = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let c = ctx.client(id).await;
            eval(&c, Some(s), &spin_code(&format!("spin_hostile_{id}"))).await
        })
    };
    wait_spinning(&c, &format!("spin_hostile_{id}")).await;
    assert!(matches!(
        c.call(Op::Interrupt { session: s }).await,
        Ok(Reply::Interrupted { running: true })
    ));
    // The feature: the interrupt stops a loop that never ends by itself; 10 s is headroom
    // for a loaded machine, not a speed claim.
    let (_, _, r) = tokio::time::timeout(Duration::from_secs(10), looping)
        .await
        .expect("the interrupt did not stop the loop")
        .expect("task");
    let e = r.error.expect("interrupted");
    assert_eq!(e.type_name, "KeyboardInterrupt");
    let (_, _, r) = eval(&c, Some(s), "n > 0").await;
    assert_eq!(r.value.as_deref(), Some("True"));
}
