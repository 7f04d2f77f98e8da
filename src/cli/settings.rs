//! `push secret` and `push config`: an app's secrets (value from stdin, never argv; listed
//! by name only) and config entries from the shell.

use std::io::Read;

use anyhow::{bail, Context};
use push_protocol::{Op, Reply, SecretText, SettingInfo};
use push_repl::views::format_time;

use super::target::Target;

#[derive(clap::Args, Debug)]
pub struct SecretArgs {
    #[command(subcommand)]
    pub command: SecretCommand,
    #[command(flatten)]
    pub target: Target,
}

#[derive(clap::Subcommand, Debug)]
pub enum SecretCommand {
    /// Set a secret of APP; the value is read from stdin (never from the command line, which
    /// other users of the machine can see). Needs the deployer role on APP.
    Set { app: String, name: String },
    /// APP's secrets: names, who set them and when (never their values).
    List { app: String },
    /// Print one secret's value. Needs the admin role.
    Get { app: String, name: String },
    /// Remove a secret of APP. Needs the deployer role on APP.
    Rm { app: String, name: String },
}

#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
    #[command(flatten)]
    pub target: Target,
}

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Set config entry KEY of APP to VALUE. Needs the deployer role on APP.
    Set {
        app: String,
        key: String,
        value: String,
    },
    /// Print the value of config entry KEY of APP.
    Get { app: String, key: String },
    /// APP's config entries with their values.
    List { app: String },
    /// Remove config entry KEY of APP. Needs the deployer role on APP.
    Rm { app: String, key: String },
}

/// The secret's value from stdin: all of it, without one trailing newline.
fn read_value() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let mut value = String::new();
    if std::io::IsTerminal::is_terminal(&stdin) {
        eprint!("value (one line; pipe it in to keep it off the screen): ");
        stdin
            .read_line(&mut value)
            .context("reading the secret from stdin")?;
    } else {
        stdin
            .lock()
            .read_to_string(&mut value)
            .context("reading the secret from stdin (it must be UTF-8 text)")?;
    }
    let value = value
        .strip_suffix('\n')
        .map(|v| v.strip_suffix('\r').unwrap_or(v))
        .unwrap_or(&value);
    if value.is_empty() {
        bail!(
            "no value on stdin; pipe it in, e.g. `printf %s \"$KEY\" | push secret set APP NAME`"
        );
    }
    Ok(value.to_string())
}

pub async fn secret(args: SecretArgs) -> anyhow::Result<()> {
    let client = args.target.connect(None).await?;
    match args.command {
        SecretCommand::Set { app, name } => {
            let value = Some(SecretText(read_value()?));
            let op = Op::SecretSet {
                app: app.clone(),
                name: name.clone(),
                value,
            };
            client.call(op).await.context("setting the secret")?;
            println!("secret {name} of {app} set; running code reads it on its next push.secret({name:?})");
        }
        SecretCommand::Rm { app, name } => {
            let op = Op::SecretSet {
                app: app.clone(),
                name: name.clone(),
                value: None,
            };
            removed(
                client.call(op).await.context("removing the secret")?,
                &app,
                &name,
                "secret",
            )?;
        }
        SecretCommand::List { app } => {
            let Reply::Settings(entries) = client.call(Op::Secrets { app: app.clone() }).await?
            else {
                bail!("unexpected reply from the node");
            };
            print!("{}", table(&app, "secrets", &entries));
        }
        SecretCommand::Get { app, name } => {
            let op = Op::SecretGet {
                app: app.clone(),
                name: name.clone(),
            };
            match client.call(op).await.context("reading the secret")? {
                Reply::Secret(Some(value)) => println!("{}", value.0),
                Reply::Secret(None) => bail!(
                    "app {app} has no secret {name:?}; `push secret list {app}` shows its names"
                ),
                _ => bail!("unexpected reply from the node"),
            }
        }
    }
    Ok(())
}

pub async fn config(args: ConfigArgs) -> anyhow::Result<()> {
    let client = args.target.connect(None).await?;
    match args.command {
        ConfigCommand::Set { app, key, value } => {
            let op = Op::ConfigSet {
                app: app.clone(),
                key: key.clone(),
                value: Some(value),
            };
            client.call(op).await.context("setting the config entry")?;
            println!(
                "config {key} of {app} set; running code reads it on its next push.config({key:?})"
            );
        }
        ConfigCommand::Rm { app, key } => {
            let op = Op::ConfigSet {
                app: app.clone(),
                key: key.clone(),
                value: None,
            };
            removed(
                client.call(op).await.context("removing the config entry")?,
                &app,
                &key,
                "config entry",
            )?;
        }
        ConfigCommand::List { app } => {
            let entries = config_entries(&client, &app).await?;
            print!("{}", table(&app, "config entries", &entries));
        }
        ConfigCommand::Get { app, key } => {
            let entries = config_entries(&client, &app).await?;
            match entries.into_iter().find(|e| e.name == key) {
                Some(e) => println!("{}", e.value.unwrap_or_default()),
                None => bail!(
                    "app {app} has no config entry {key:?}; `push config list {app}` shows them"
                ),
            }
        }
    }
    Ok(())
}

async fn config_entries(
    client: &push_protocol::Client,
    app: &str,
) -> anyhow::Result<Vec<SettingInfo>> {
    let Reply::Settings(entries) = client
        .call(Op::Config {
            app: app.to_string(),
        })
        .await?
    else {
        bail!("unexpected reply from the node");
    };
    Ok(entries)
}

fn removed(reply: Reply, app: &str, name: &str, noun: &str) -> anyhow::Result<()> {
    match reply {
        Reply::Deleted { existed: true, .. } => println!("{noun} {name} of {app} removed"),
        Reply::Deleted { existed: false, .. } => {
            bail!("app {app} has no {noun} {name:?}; nothing removed")
        }
        _ => bail!("unexpected reply from the node"),
    }
    Ok(())
}

/// Secrets (no values) or config entries as a table.
fn table(app: &str, what: &str, entries: &[SettingInfo]) -> String {
    if entries.is_empty() {
        return format!("app {app} has no {what}\n");
    }
    let mut out = format!("{:<24} {:<20} {:<20} VALUE\n", "NAME", "SET BY", "WHEN");
    for e in entries {
        let value = e.value.as_deref().unwrap_or("(secret)");
        out.push_str(&format!(
            "{:<24} {:<20} {:<20} {value}\n",
            e.name,
            e.set_by,
            format_time(e.set_ms)
        ));
    }
    out
}
