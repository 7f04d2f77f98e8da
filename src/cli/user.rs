//! `push user add/list/revoke/rotate`: the cluster's users from the shell. A new or rotated
//! secret is printed once; nodes keep only its hash.

use std::time::Duration;

use anyhow::{bail, Context};
use push_protocol::{Op, Reply, UserInfo, UserRole};
use push_repl::views::format_time;

use super::target::Target;

#[derive(clap::Args, Debug)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
    #[command(flatten)]
    pub target: Target,
}

#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user and print its secret (shown this once).
    Add {
        /// User name: letters, digits, `_`, `-`, `.` or `@`
        name: String,
        /// viewer, operator, deployer, developer or admin (each includes the ones before)
        #[arg(long)]
        role: UserRole,
        /// Limit the role to this app (repeat for several); default: every app
        #[arg(long = "app", value_name = "APP")]
        apps: Vec<String>,
        /// Refuse the secret after this long: 30d, 12h, 90m, 2w, 45s; default: until revoked
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires: Option<Duration>,
    },
    /// Every user: name, role, apps, accessor, expiry (never a secret).
    List {
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Remove a user (by name or accessor): every node refuses its secret from then on,
    /// on open connections too.
    Revoke {
        /// User name or accessor
        user: String,
    },
    /// Give a user a new secret (printed once); the old one is refused from then on.
    Rotate {
        /// User name
        name: String,
    },
}

/// Parses `30d`, `12h`, `90m`, `45s` or `2w`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || {
        format!(
            "{text:?} is not a duration: write a number and a unit, as 30d, 12h, 90m, 45s or 2w"
        )
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(format!(
            "{text:?}: a user that expires at once could never log in; give a positive duration"
        ));
    }
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

pub async fn run(args: UserArgs) -> anyhow::Result<()> {
    let client = args.target.connect(None).await?;
    match args.command {
        UserCommand::Add {
            name,
            role,
            apps,
            expires,
        } => {
            let op = Op::UserAdd {
                name,
                role,
                apps,
                ttl_ms: expires.map(|d| d.as_millis().try_into().unwrap_or(u64::MAX)),
            };
            print_secret(client.call(op).await.context("adding the user")?, "created")
        }
        UserCommand::Rotate { name } => print_secret(
            client
                .call(Op::UserRotate { name })
                .await
                .context("rotating the user's secret")?,
            "new secret for",
        ),
        UserCommand::Revoke { user } => {
            let Reply::Revoked(names) = client
                .call(Op::UserRevoke { user })
                .await
                .context("revoking the user")?
            else {
                bail!("unexpected reply from the node");
            };
            println!(
                "revoked {}: every node refuses its secret from now on",
                names.join(", ")
            );
            Ok(())
        }
        UserCommand::List { json } => {
            let Reply::Users(users) = client.call(Op::UserList).await? else {
                bail!("unexpected reply from the node");
            };
            if json {
                for u in &users {
                    println!("{}", serde_json::to_string(u)?);
                }
            } else {
                print!("{}", table(&users));
            }
            Ok(())
        }
    }
}

fn print_secret(reply: Reply, what: &str) -> anyhow::Result<()> {
    let Reply::UserSecret { user, secret } = reply else {
        bail!("unexpected reply from the node");
    };
    println!("{what} user {} ({})", user.name, scope(&user));
    if let Some(at) = user.expires_ms {
        println!("expires {}", format_time(at));
    }
    println!("secret (shown this once; nodes keep only its hash):");
    println!("{secret}");
    println!("use it with `push login HOST:PORT` (reads the secret from stdin) or --token");
    Ok(())
}

fn scope(user: &UserInfo) -> String {
    if user.apps.is_empty() {
        format!("{} on every app", user.role)
    } else {
        format!("{} on {}", user.role, user.apps.join(", "))
    }
}

/// The users as a table.
pub fn table(users: &[UserInfo]) -> String {
    if users.is_empty() {
        return "no users; the cluster token is the only credential (`push user add` makes one)\n"
            .into();
    }
    let mut out = format!(
        "{:<20} {:<10} {:<18} {:<20} {:<20} {}\n",
        "USER", "ROLE", "ACCESSOR", "APPS", "EXPIRES", "CREATED BY"
    );
    for u in users {
        let apps = if u.apps.is_empty() {
            "*".to_string()
        } else {
            u.apps.join(",")
        };
        let expires = u.expires_ms.map_or("never".to_string(), format_time);
        out.push_str(&format!(
            "{:<20} {:<10} {:<18} {:<20} {:<20} {}\n",
            u.name, u.role, u.accessor, apps, expires, u.created_by
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(1_209_600)));
        for bad in ["", "d", "30", "30y", "-1d", "1.5h"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("30d, 12h"), "{bad}: {e}");
        }
        assert!(parse_duration("0s").unwrap_err().contains("positive"));
        assert!(parse_duration("99999999999999999999w").is_err());
    }
}
