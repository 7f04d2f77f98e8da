//! `push kernel install`: installs the Jupyter kernelspec of push_client's kernel, so
//! Notebook, Lab and `jupyter console` can evaluate on a node. The kernel is Python (it
//! subclasses ipykernel's `Kernel`), so the install runs in the interpreter that has
//! push_client installed, through `python -m push_client.kernel install`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};

use super::target::{Target, PUSH_DIR};

#[derive(clap::Args, Debug)]
pub struct KernelArgs {
    #[command(subcommand)]
    pub command: KernelCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum KernelCommand {
    /// Install the kernelspec: cells of a notebook using it run on the node --to names.
    Install {
        /// Install under PREFIX/share/jupyter/kernels (a virtualenv, say)
        #[arg(long, value_name = "PREFIX", conflicts_with = "user")]
        prefix: Option<PathBuf>,
        /// Install for this user (the default)
        #[arg(long)]
        user: bool,
        /// Kernelspec name, as `jupyter console --kernel NAME` takes it
        #[arg(long, default_value = "push")]
        name: String,
        /// The Python with push_client installed (`pip install ./pyclient`) and ipykernel
        #[arg(long, default_value = "python3", env = "PUSH_KERNEL_PYTHON")]
        python: String,
        #[command(flatten)]
        target: Target,
    },
}

pub fn run(args: KernelArgs) -> anyhow::Result<()> {
    let KernelCommand::Install {
        prefix,
        user: _,
        name,
        python,
        target,
    } = args.command;
    let addr = target.addr(None)?;
    if target.token.is_some() {
        bail!("a kernelspec is a plain file others may read: pass the token with --token-file FILE (or let the kernel read $PUSH_TOKEN), not --token");
    }
    // The kernel starts wherever Jupyter runs, so a relative token file is made absolute.
    let token_file = match target.token_file {
        Some(file) => Some(file),
        None => Some(PathBuf::from(PUSH_DIR).join("token")).filter(|f| f.is_file()),
    }
    .map(|f| std::path::absolute(&f).with_context(|| format!("resolving {}", f.display())))
    .transpose()?;
    let mut command = Command::new(&python);
    command.args([
        "-m",
        "push_client.kernel",
        "install",
        "--to",
        &addr,
        "--name",
        &name,
    ]);
    if let Some(prefix) = &prefix {
        command.arg("--prefix").arg(prefix);
    }
    if let Some(file) = &token_file {
        command.arg("--token-file").arg(file);
    }
    let probe = Command::new(&python)
        .args(["-c", "import push_client.kernel"])
        .output()
        .with_context(|| format!("running {python} (pass --python or set PUSH_KERNEL_PYTHON to the interpreter Jupyter uses)"))?;
    if !probe.status.success() {
        bail!(
            "{python} cannot import push_client.kernel: install the client there (`{python} -m pip install ./pyclient ipykernel` from a Push checkout), or pass --python\n{}",
            String::from_utf8_lossy(&probe.stderr).trim_end()
        );
    }
    let status = command
        .status()
        .with_context(|| format!("running {python} -m push_client.kernel install"))?;
    if !status.success() {
        bail!("installing the kernelspec failed (see above)");
    }
    if token_file.is_none() {
        println!("no token file given: the kernel reads $PUSH_TOKEN (or .push/token where Jupyter starts it); pass --token-file FILE to pin one");
    }
    Ok(())
}
