//! `push eval`: one evaluation on a live node, for scripts. Output streams as it is printed;
//! the value (or the traceback) follows; the exit code says whether it raised.

use std::io::{Read, Write};

use anyhow::bail;
use push_protocol::{Op, Reply, Stream};

use super::target::Target;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// `[HOST:PORT] CODE`: the node (default: --to, $PUSH_ADDR, or node 1 of `push up`) and
    /// the Python code; CODE `-` or absent reads it from stdin
    #[arg(value_name = "[HOST:PORT] CODE", num_args = 0..=2)]
    pub args: Vec<String>,
    /// Evaluate inside this loaded module's namespace (hot-patch a running app)
    #[arg(long, value_name = "MODULE")]
    pub module: Option<String>,
    /// Evaluate on every node and print each node's result
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub target: Target,
}

/// Prints a result as the REPL does; returns whether it raised.
fn print_result(result: &push_protocol::EvalResult) -> bool {
    !push_repl::output::print_result(result)
}

/// `host:port` with a numeric port and no spaces: an address, not code.
fn looks_like_address(text: &str) -> bool {
    match text.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !text.contains(char::is_whitespace) && port.parse::<u16>().is_ok()
        }
        None => false,
    }
}

pub async fn run(args: EvalArgs) -> anyhow::Result<()> {
    let (node, code) = match args.args.as_slice() {
        [node, code] => (Some(node.as_str()), Some(code.as_str())),
        [one] if looks_like_address(one) => (Some(one.as_str()), None),
        [code] => (None, Some(code.as_str())),
        _ => (None, None),
    };
    let code = match code {
        Some("-") | None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        }
        Some(code) => code.to_string(),
    };
    let client = args.target.connect(node).await?;
    if args.all {
        let results = match client.call(Op::EvalAll { code }).await? {
            Reply::EvaluatedAll(results) => results,
            other => bail!("unexpected reply {other:?}"),
        };
        let mut failed = false;
        for (node, result) in results {
            print!("node {node}: ");
            match result {
                Ok(r) => {
                    if r.value.is_none() && r.error.is_none() {
                        println!("(no value)");
                    }
                    failed |= print_result(&r);
                }
                Err(e) => {
                    println!("unreachable: {e}");
                    failed = true;
                }
            }
        }
        if failed {
            bail!("the evaluation failed on at least one node");
        }
        return Ok(());
    }
    let mut replies = client
        .call_stream(Op::Eval {
            session: None,
            code,
            module: args.module,
        })
        .await?;
    let mut last = None;
    while let Some(outcome) = replies.recv().await {
        match outcome {
            Ok(Reply::Output {
                stream: Stream::Stdout,
                text,
            }) => {
                print!("{text}");
                std::io::stdout().flush().ok();
            }
            Ok(Reply::Output {
                stream: Stream::Stderr,
                text,
            }) => eprint!("{text}"),
            other => last = Some(other),
        }
    }
    match last {
        Some(Ok(Reply::Evaluated(result))) => {
            if print_result(&result) {
                bail!(
                    "the evaluated code raised {}",
                    result.error.map(|e| e.type_name).unwrap_or_default()
                );
            }
            Ok(())
        }
        Some(Ok(other)) => bail!("unexpected reply {other:?}"),
        Some(Err(e)) => bail!("{e}"),
        None => bail!("the node closed the connection before answering"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_and_code() {
        assert!(super::looks_like_address("127.0.0.1:7001"));
        assert!(super::looks_like_address("node1:7001"));
        assert!(!super::looks_like_address("d = {1:2}"));
        assert!(!super::looks_like_address("x[1:2]"));
        assert!(!super::looks_like_address("1+1"));
    }
}
