//! Which Python a deploy resolves wheels for: asks every member node for its interpreter and
//! platform tags, and agrees on one target (the shared Python and ABI, the platform tags every
//! node installs) or refuses, naming each node's Python and what to do.

use push_protocol::{Op, PlatformInfo, Reply};

use super::target::Target;

/// One node's answer to [`Op::Platform`].
#[derive(Debug, Clone)]
pub struct NodePlatform {
    pub id: u64,
    pub addr: String,
    pub platform: PlatformInfo,
}

/// Why the nodes' Pythons cannot share one set of wheels.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlatformMismatch {
    #[error(
        "not deployed, nothing uploaded: the nodes run different Pythons, and one set of wheels \
         cannot fit them all:\n{0}\nrun the same Python (version and build) on every node — \
         restart the odd nodes with a push built against it — then deploy again"
    )]
    Pythons(String),
    #[error(
        "not deployed, nothing uploaded: the nodes' Pythons install no platform tag in common, \
         so no wheel fits them all:\n{0}\nrun every node on the same platform (OS, C library, \
         architecture), then deploy again"
    )]
    NoCommonTag(String),
    #[error("no node answered with its Python platform")]
    NoAnswer,
}

fn listing(nodes: &[NodePlatform]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "  node {} ({}): Python {} ({}, {}; tags {})",
                n.id,
                n.addr,
                n.platform.python,
                n.platform.implementation,
                n.platform.abi,
                n.platform.platforms.first().map_or("none", String::as_str)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// major.minor of a full version like "3.11.7".
fn minor(version: &str) -> &str {
    match version.match_indices('.').nth(1) {
        Some((i, _)) => &version[..i],
        None => version,
    }
}

/// The one target every node's wheels can be resolved for: the nodes' common Python
/// (same major.minor, implementation and ABI) with the platform tags all of them install, in
/// the first node's order of preference.
pub fn common_platform(nodes: &[NodePlatform]) -> Result<PlatformInfo, PlatformMismatch> {
    let first = nodes.first().ok_or(PlatformMismatch::NoAnswer)?;
    let same_python = |n: &NodePlatform| {
        minor(&n.platform.python) == minor(&first.platform.python)
            && n.platform.implementation == first.platform.implementation
            && n.platform.abi == first.platform.abi
    };
    if !nodes.iter().all(same_python) {
        return Err(PlatformMismatch::Pythons(listing(nodes)));
    }
    let tags: Vec<String> = first
        .platform
        .platforms
        .iter()
        .filter(|t| nodes.iter().all(|n| n.platform.platforms.contains(t)))
        .cloned()
        .collect();
    if tags.is_empty() {
        return Err(PlatformMismatch::NoCommonTag(listing(nodes)));
    }
    Ok(PlatformInfo {
        platforms: tags,
        ..first.platform.clone()
    })
}

async fn ask(client: &push_protocol::Client) -> anyhow::Result<PlatformInfo> {
    match client.call(Op::Platform).await? {
        Reply::Platform(p) => Ok(p),
        other => anyhow::bail!("unexpected reply {other:?}"),
    }
}

/// Asks every member node for its Python. A node that does not answer is left out with a
/// warning (it checks the wheels itself when it installs them); the node `client` is
/// connected to answers for itself when the membership cannot be read.
pub async fn every_node(
    target: &Target,
    client: &push_protocol::Client,
) -> anyhow::Result<Vec<NodePlatform>> {
    let status = match client.call(Op::Status).await {
        Ok(Reply::Status(s)) => s,
        Ok(other) => anyhow::bail!("unexpected reply {other:?}"),
        Err(e) => anyhow::bail!("cannot ask the cluster for its members: {e}"),
    };
    let mut nodes = Vec::new();
    for member in &status.members {
        let answer = if member.id == status.id {
            ask(client).await
        } else {
            match target.token_for(Some(&member.addr)) {
                Ok((token, _)) => {
                    match push_protocol::Client::connect(&member.addr, &token).await {
                        Ok(c) => ask(&c).await,
                        Err(e) => Err(e.into()),
                    }
                }
                Err(e) => Err(e),
            }
        };
        match answer {
            Ok(platform) => nodes.push(NodePlatform {
                id: member.id,
                addr: member.addr.clone(),
                platform,
            }),
            Err(e) => eprintln!(
                "warning: node {} ({}) did not say which Python it runs ({e:#}); the wheels are \
                 resolved for the nodes that did",
                member.id, member.addr
            ),
        }
    }
    if nodes.is_empty() {
        nodes.push(NodePlatform {
            id: status.id,
            addr: status.addr.clone(),
            platform: ask(client)
                .await
                .map_err(|e| e.context("cannot ask the cluster for its Python platform"))?,
        });
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, python: &str, abi: &str, tags: &[&str]) -> NodePlatform {
        NodePlatform {
            id,
            addr: format!("127.0.0.1:700{id}"),
            platform: PlatformInfo {
                python: python.into(),
                implementation: "cp".into(),
                abi: abi.into(),
                platforms: tags.iter().map(|t| t.to_string()).collect(),
            },
        }
    }

    #[test]
    fn the_same_python_everywhere_is_the_target() {
        let tags = [
            "manylinux_2_36_x86_64",
            "manylinux_2_17_x86_64",
            "linux_x86_64",
        ];
        let nodes = [
            node(1, "3.11.7", "cp311", &tags),
            node(2, "3.11.9", "cp311", &tags),
        ];
        let p = common_platform(&nodes).unwrap();
        assert_eq!(p.abi, "cp311");
        assert_eq!(p.platforms, tags);
    }

    #[test]
    fn only_the_tags_every_node_installs_are_asked_for() {
        let nodes = [
            node(
                1,
                "3.11.7",
                "cp311",
                &[
                    "manylinux_2_36_x86_64",
                    "manylinux_2_17_x86_64",
                    "linux_x86_64",
                ],
            ),
            node(
                2,
                "3.11.7",
                "cp311",
                &[
                    "manylinux_2_28_x86_64",
                    "manylinux_2_17_x86_64",
                    "linux_x86_64",
                ],
            ),
        ];
        let p = common_platform(&nodes).unwrap();
        assert_eq!(p.platforms, ["manylinux_2_17_x86_64", "linux_x86_64"]);
    }

    #[test]
    fn different_pythons_are_refused_naming_every_node() {
        let tags = ["linux_x86_64"];
        let nodes = [
            node(1, "3.11.7", "cp311", &tags),
            node(2, "3.12.1", "cp312", &tags),
            node(3, "3.11.7", "cp311", &tags),
        ];
        let err = common_platform(&nodes).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, PlatformMismatch::Pythons(_)), "{text}");
        for want in [
            "node 1 (127.0.0.1:7001): Python 3.11.7",
            "node 2 (127.0.0.1:7002): Python 3.12.1",
            "node 3",
            "nothing uploaded",
            "same Python",
        ] {
            assert!(text.contains(want), "{want:?} missing from: {text}");
        }
    }

    #[test]
    fn a_different_abi_of_the_same_version_is_refused() {
        let tags = ["linux_x86_64"];
        let nodes = [
            node(1, "3.13.0", "cp313", &tags),
            node(2, "3.13.0", "cp313t", &tags),
        ];
        assert!(matches!(
            common_platform(&nodes),
            Err(PlatformMismatch::Pythons(_))
        ));
    }

    #[test]
    fn platforms_with_no_tag_in_common_are_refused() {
        let nodes = [
            node(
                1,
                "3.11.7",
                "cp311",
                &["manylinux_2_17_x86_64", "linux_x86_64"],
            ),
            node(
                2,
                "3.11.7",
                "cp311",
                &["manylinux_2_17_aarch64", "linux_aarch64"],
            ),
        ];
        let err = common_platform(&nodes).unwrap_err();
        assert!(matches!(err, PlatformMismatch::NoCommonTag(_)), "{err}");
        assert!(err.to_string().contains("node 2 (127.0.0.1:7002)"), "{err}");
    }

    #[test]
    fn no_answer_is_an_error_not_a_guess() {
        assert_eq!(common_platform(&[]), Err(PlatformMismatch::NoAnswer));
    }

    #[test]
    fn minor_versions() {
        assert_eq!(minor("3.11.7"), "3.11");
        assert_eq!(minor("3.12"), "3.12");
    }
}
