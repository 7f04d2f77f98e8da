//! The `push` binary: parse arguments, run, print the error chain, set the exit code.

use clap::Parser;

fn main() {
    let cli = push::cli::Cli::parse();
    push::cli::pipe::exit_quietly_on_broken_pipe(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
