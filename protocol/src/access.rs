//! Which role each request needs: [`required`] is the one table from every [`Op`] to the
//! least role allowed it (or to "nodes only"), which the node checks at its edge; [`is_read`]
//! says from the same table which requests only read, which the deploy gate's scratch worker
//! may send.

use crate::{DebugAction, Op, UserRole};

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// At least this role (on the op's app, for an op that names one).
    Role(UserRole),
    /// Only the cluster token: requests nodes send each other.
    ClusterToken,
}

/// The role each request needs. One exhaustive match: a new `Op` does not compile until it
/// is placed here.
pub fn required(op: &Op) -> Need {
    use UserRole::*;
    Need::Role(match op {
        Op::Ping
        | Op::Status
        | Op::WhoAmI
        | Op::Nodes
        | Op::Logs { .. }
        | Op::Audit { .. }
        | Op::KvGet { .. }
        | Op::KvList { .. }
        | Op::QueuePeek { .. }
        | Op::QueueStats
        | Op::TsRange { .. }
        | Op::TsStats
        | Op::MissingBlobs { .. }
        | Op::Versions { .. }
        | Op::Diff { .. }
        | Op::Files { .. }
        | Op::FileSizes { .. }
        | Op::FilePart { .. }
        | Op::Daemons
        | Op::Tail { .. }
        | Op::Secrets { .. }
        | Op::Config { .. }
        | Op::Platform
        | Op::Envs => Viewer,
        // Listing failures and reading their tracebacks is a viewer's; their locals, an
        // evaluation in a frame, a replay and a trace run or show app data: a developer's.
        Op::Debug { action, .. } => match action {
            DebugAction::Errors | DebugAction::Open { .. } | DebugAction::Source { .. } => Viewer,
            _ => Developer,
        },
        Op::KvSet { .. }
        | Op::KvDelete { .. }
        | Op::KvCas { .. }
        | Op::QueuePut { .. }
        | Op::QueueTake { .. }
        | Op::QueueAck { .. }
        | Op::TsAppend { .. }
        | Op::Publish { .. }
        | Op::Restart { .. }
        | Op::Join { .. }
        | Op::JoinLearner { .. }
        | Op::Promote { .. }
        | Op::Remove { .. }
        | Op::Backup => Operator,
        Op::PutBlobs { .. }
        | Op::JoinBlob { .. }
        | Op::Commit { .. }
        | Op::Activate { .. }
        | Op::SecretSet { .. }
        | Op::ConfigSet { .. } => Deployer,
        Op::Eval { .. }
        | Op::EvalAll { .. }
        | Op::Run { .. }
        | Op::SessionOpen
        | Op::SessionOpenOn { .. }
        | Op::SessionClose { .. }
        | Op::Complete { .. }
        | Op::Inspect { .. }
        | Op::IsComplete { .. }
        | Op::Interrupt { .. } => Developer,
        Op::UserAdd { .. }
        | Op::UserList
        | Op::UserRevoke { .. }
        | Op::UserRotate { .. }
        | Op::SecretGet { .. } => Admin,
        Op::Forwarded { .. }
        | Op::Audited { .. }
        | Op::AuditRecord(_)
        | Op::Heartbeat(_)
        | Op::TsCursor { .. } => return Need::ClusterToken,
    })
}

/// Whether `op` only reads: what a viewer may ask, and a secret's value (an admin's to read
/// from outside, but the app's own code reads its secrets). The deploy gate's scratch worker
/// may send these and nothing else, so importing a version that is not active yet reads the
/// cluster (config and secrets at module level included) and changes nothing.
pub fn is_read(op: &Op) -> bool {
    matches!(required(op), Need::Role(UserRole::Viewer)) || matches!(op, Op::SecretGet { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_the_viewers_ops_and_a_secrets_value() {
        assert!(is_read(&Op::Status));
        assert!(is_read(&Op::Config { app: "a".into() }));
        let get = Op::SecretGet {
            app: "a".into(),
            name: "k".into(),
        };
        assert!(is_read(&get));
        assert_eq!(required(&get), Need::Role(UserRole::Admin));
        let set = Op::KvSet {
            map: "m".into(),
            key: "k".into(),
            value: crate::Value::Int(1),
        };
        assert!(!is_read(&set));
        let eval = Op::Eval {
            session: None,
            code: "1".into(),
            module: None,
        };
        assert!(!is_read(&eval));
        assert!(!is_read(&Op::AuditRecord(vec![])));
    }
}
