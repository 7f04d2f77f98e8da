//! The live-eval endpoint: sessions, eval with streamed output, errors with tracebacks,
//! truncation, interrupt, completion, inspection, hot-patching a module, eval on every node.

use std::time::{Duration, Instant};

use push_protocol::{Client, EvalResult, Op, Reply};

use crate::support::cluster::ok;
use crate::support::eval::{eval_streams, spin_code, wait_spinning};
use crate::support::http::get;
use crate::support::Cluster;

/// Stdout with any stderr appended after "[err]", and the result.
async fn eval_in(client: &Client, session: Option<u64>, code: &str) -> (String, EvalResult) {
    let (mut out, err, result) = eval_streams(client, session, code).await;
    if !err.is_empty() {
        out.push_str(&format!("[err]{err}"));
    }
    (out, result)
}

async fn session(client: &Client) -> u64 {
    match client.call(Op::SessionOpen).await.expect("open") {
        Reply::Session { id } => id,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_values_output_errors_and_truncation() {
    let cluster = Cluster::start(1).await;
    let c = cluster.client(1).await;
    let s = session(&c).await;

    let (out, r) = eval_in(&c, Some(s), "1 + 1").await;
    assert_eq!(
        (out.as_str(), r.value.as_deref(), r.type_name.as_deref()),
        ("", Some("2"), Some("int"))
    );
    let (out, r) = eval_in(
        &c,
        Some(s),
        "import sys\nx = 40\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\nx + 2",
    )
    .await;
    assert_eq!(out, "to stdout\n[err]to stderr\n");
    assert_eq!(r.value.as_deref(), Some("42"));
    // The namespace persists in the session, and across connections (sessions outlive them).
    let other = cluster.client(1).await;
    let (_, r) = eval_in(&other, Some(s), "x * 10").await;
    assert_eq!(r.value.as_deref(), Some("400"));
    // A fresh session does not see it.
    let s2 = session(&c).await;
    let (_, r) = eval_in(&c, Some(s2), "x").await;
    let error = r.error.expect("NameError");
    assert_eq!(error.type_name, "NameError");

    // An exception: type, message, frames with file, line and source.
    let (_, r) = eval_in(&c, Some(s), "def f(n):\n    return 10 // n\n\nf(0)").await;
    let e = r.error.expect("an error");
    assert_eq!(e.type_name, "ZeroDivisionError");
    assert_eq!(e.frames.len(), 2, "{:?}", e.frames);
    assert_eq!(
        (
            e.frames[1].line,
            e.frames[1].function.as_str(),
            e.frames[1].source.as_str()
        ),
        (2, "f", "return 10 // n")
    );
    assert!(
        e.formatted
            .contains("ZeroDivisionError: integer division or modulo by zero"),
        "{}",
        e.formatted
    );
    // A syntax error is an error result too, and the session lives on.
    let (_, r) = eval_in(&c, Some(s), "def broken(:").await;
    assert_eq!(r.error.expect("syntax").type_name, "SyntaxError");

    // Megabytes of output and a huge repr are cut, with a marker saying how much.
    let (out, r) = eval_in(&c, Some(s), "print('y' * 5_000_000)").await;
    assert_eq!(out.len(), 1 << 20);
    assert!(
        r.truncated
            .as_deref()
            .unwrap_or("")
            .contains("stdout cut: 3951425 bytes"),
        "{:?}",
        r.truncated
    );
    let (_, r) = eval_in(&c, Some(s), "'z' * 1_000_000").await;
    assert_eq!(r.value.expect("value").len(), 64 * 1024);
    assert!(r.truncated.expect("cut").contains("repr cut"));
    // Many small prints arrive complete and in order.
    let (out, _) = eval_in(&c, Some(s), "for i in range(20000):\n    print(i)").await;
    let expected: String = (0..20000).map(|i| format!("{i}\n")).collect();
    assert_eq!(out, expected);

    // Closing a session frees it.
    assert!(matches!(
        c.call(Op::SessionClose { session: s2 }).await,
        Ok(Reply::Closed { existed: true })
    ));
    let (_, r) = eval_in(&c, Some(s2), "1").await;
    assert!(r.error.expect("gone").message.contains("does not exist"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_interrupted_and_the_node_keeps_serving() {
    let cluster = Cluster::start(1).await;
    let c = cluster.client(1).await;
    let s = session(&c).await;
    let addr = cluster.addr(1);
    let token = cluster.token.clone();
    let looping = tokio::spawn(async move {
        let c = Client::connect(&addr, &token).await.expect("connect");
        eval_in(&c, Some(s), &spin_code("spin_eval")).await
    });
    wait_spinning(&c, "spin_eval").await;
    // Other work goes on while it spins.
    let (_, r) = eval_in(&c, None, "2 ** 10").await;
    assert_eq!(r.value.as_deref(), Some("1024"));
    match c.call(Op::Interrupt { session: s }).await {
        Ok(Reply::Interrupted { running: true }) => {}
        other => panic!("{other:?}"),
    }
    // The feature is that an interrupt stops a running loop promptly (no wait for it to end,
    // which it never does); 10 s is headroom for a loaded machine, not a speed claim.
    let (_, r) = tokio::time::timeout(Duration::from_secs(10), looping)
        .await
        .expect("the interrupt did not stop the loop")
        .expect("task");
    assert_eq!(r.error.expect("interrupted").type_name, "KeyboardInterrupt");
    let (_, r) = eval_in(&c, Some(s), "n > 0").await;
    assert_eq!(r.value.as_deref(), Some("True"));
    assert!(matches!(
        c.call(Op::Interrupt { session: s }).await,
        Ok(Reply::Interrupted { running: false })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_inspection_and_completeness() {
    let cluster = Cluster::start(1).await;
    let c = cluster.client(1).await;
    let s = session(&c).await;
    eval_in(&c, Some(s), "def greet(name: str, loud: bool = False) -> str:\n    \"\"\"Say hello.\"\"\"\n    return name\n").await;
    let code = "push.kv(\"x\").";
    match c
        .call(Op::Complete {
            session: Some(s),
            code: code.into(),
            cursor: code.len(),
            module: None,
        })
        .await
    {
        Ok(Reply::Completions { start, items }) => {
            assert_eq!(start, code.len());
            for want in ["get", "set", "cas", "keys", "delete"] {
                assert!(
                    items.iter().any(|i| i == want),
                    "{want} missing from {items:?}"
                );
            }
        }
        other => panic!("{other:?}"),
    }
    match c
        .call(Op::Complete {
            session: Some(s),
            code: "gre".into(),
            cursor: 3,
            module: None,
        })
        .await
    {
        Ok(Reply::Completions { start, items }) => {
            assert_eq!(start, 0);
            assert!(items.contains(&"greet".to_string()), "{items:?}");
        }
        other => panic!("{other:?}"),
    }
    match c
        .call(Op::Inspect {
            session: Some(s),
            expr: "greet".into(),
        })
        .await
    {
        Ok(Reply::Inspected(i)) => {
            assert_eq!(
                i.signature.as_deref(),
                Some("(name: str, loud: bool = False) -> str")
            );
            assert_eq!(i.doc.as_deref(), Some("Say hello."));
            assert_eq!(i.line, Some(1));
            assert_eq!(i.type_name, "function");
        }
        other => panic!("{other:?}"),
    }
    let err = c
        .call(Op::Inspect {
            session: Some(s),
            expr: "nope_nothing".into(),
        })
        .await
        .expect_err("NameError");
    assert!(err.to_string().contains("nope_nothing"), "{err}");
    for (code, want) in [
        ("x = 1", true),
        ("def f():", false),
        ("def f():\n    return 1", false),
        ("def f():\n    return 1\n", true),
        ("if x:\n", false),
        ("1 +", true),
    ] {
        match c.call(Op::IsComplete { code: code.into() }).await {
            Ok(Reply::IsComplete { complete }) => assert_eq!(complete, want, "{code:?}"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_patching_a_module_changes_the_running_handler_and_eval_runs_on_every_node() {
    let cluster = Cluster::start(3).await;
    let app = cluster.dir.path().join("patch");
    std::fs::create_dir_all(app.join("lib")).expect("dir");
    std::fs::write(app.join("app.py"), "import push\nfrom lib import words\n\n@push.route('GET', '/')\ndef index():\n    return words.word()\n").expect("write");
    std::fs::write(
        app.join("lib/words.py"),
        "def word():\n    return 'before'\n",
    )
    .expect("write");
    ok(&cluster.cli(&[
        "deploy",
        app.to_str().expect("utf8"),
        "--to",
        &cluster.addr(1),
    ]));
    // Every node must serve it before the patch: node 3 is asked below, and a deploy is
    // acknowledged before each follower has loaded the version.
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in [2, 3] {
        while get(&cluster.http(id), "/").await.text() != "before" {
            assert!(Instant::now() < deadline, "node {id} never served");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let c = cluster.client(2).await;
    let reply = c
        .call(Op::Eval {
            session: None,
            code: "def word():\n    return 'patched'\n".into(),
            module: Some("lib.words".into()),
        })
        .await
        .expect("patch");
    assert!(
        matches!(reply, Reply::Evaluated(ref r) if r.error.is_none()),
        "{reply:?}"
    );
    assert_eq!(get(&cluster.http(2), "/").await.text(), "patched");
    assert_eq!(
        get(&cluster.http(3), "/").await.text(),
        "before",
        "a patch is local to its node"
    );
    let err = c
        .call(Op::Eval {
            session: None,
            code: "1".into(),
            module: Some("no.such".into()),
        })
        .await
        .expect("reply");
    assert!(
        matches!(err, Reply::Evaluated(ref r) if r.error.as_ref().is_some_and(|e| e.message.contains("no module 'no.such'"))),
        "{err:?}"
    );

    match c
        .call(Op::EvalAll {
            code: "push.node.id * 10".into(),
        })
        .await
    {
        Ok(Reply::EvaluatedAll(results)) => {
            let values: Vec<(u64, String)> = results
                .into_iter()
                .map(|(id, r)| (id, r.expect("reachable").value.expect("value")))
                .collect();
            assert_eq!(
                values,
                vec![(1, "10".into()), (2, "20".into()), (3, "30".into())]
            );
        }
        other => panic!("{other:?}"),
    }
    // The CLI: one eval for scripts, and --all.
    let out = ok(&cluster.cli(&["eval", &cluster.addr(3), "print('hi'); 6 * 7"]));
    assert_eq!(out, "hi\n42\n");
    let out = ok(&cluster.cli(&["eval", &cluster.addr(1), "--all", "push.node.role"]));
    assert_eq!(out.matches("'leader'").count(), 1, "{out}");
    let failed = cluster.cli(&["eval", &cluster.addr(1), "raise ValueError('nope')"]);
    let err = crate::support::cluster::fails(&failed);
    assert!(
        err.contains("ValueError: nope") && err.contains("raised ValueError"),
        "{err}"
    );
}
