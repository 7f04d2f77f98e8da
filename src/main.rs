//! The `push` binary: parse arguments, run, print the error chain, set the exit code.

use clap::Parser;

fn main() {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(args) = push::cli::WorkerArgs::from_argv(&argv) {
        worker(&args);
    }
    let cli = push::cli::Cli::parse();
    if let push::cli::Command::Worker(args) = &cli.command {
        worker(args);
    }
    push::cli::pipe::exit_quietly_on_broken_pipe(&cli.command);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let push::cli::Command::Node(args) = &cli.command {
        match args.io_threads() {
            Ok(n) => {
                builder.worker_threads(n);
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(push::cli::run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// A Python worker of a node: its own runtime, no CLI around it.
fn worker(args: &push::cli::WorkerArgs) -> ! {
    push::logs::init_worker(&args.label);
    if let Err(e) = push::runtime::worker::main(args.fd, args.threads) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    std::process::exit(0);
}
