//! Timeseries (`push.timeseries`): appends and handler cursors proposed on the leader,
//! ranges at the client's chosen consistency.

use push_protocol::{ErrorBody, ErrorCode, Outcome, ReadMode, Reply, TsConfig};

use super::leader::{self, Req};

/// Most partitions one series may have.
const MAX_PARTITIONS: u32 = 1024;

/// `TsAppend`: checks the series config, then proposes.
pub async fn append(req: &Req<'_>, config: Option<&TsConfig>) -> Outcome {
    check_config(config)?;
    leader::write(req).await
}

fn check_config(config: Option<&TsConfig>) -> Result<(), ErrorBody> {
    match config {
        Some(c) if c.partitions == 0 || c.partitions > MAX_PARTITIONS => Err(ErrorBody::new(
            ErrorCode::Invalid,
            "partitions must be between 1 and 1024",
        )),
        _ => Ok(()),
    }
}

/// `TsRange`: the last `last` points, or those between `t0` and `t1`.
pub async fn range(
    req: &Req<'_>,
    series: &str,
    t0: Option<i64>,
    t1: Option<i64>,
    last: Option<usize>,
    mode: ReadMode,
) -> Outcome {
    leader::read(req, mode, |s| {
        let points = s.timeseries.get(series).map(|x| match last {
            Some(n) => x.last(n),
            None => x.range(t0, t1),
        });
        Ok(Reply::Points(points.unwrap_or_default()))
    })
    .await
}

/// `TsStats`: every series' size.
pub async fn stats(req: &Req<'_>) -> Outcome {
    leader::read(req, ReadMode::Linearizable, |s| {
        Ok(Reply::TsStats(s.timeseries.stats()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_bounded() {
        let config = |partitions| TsConfig {
            max_age_ms: None,
            max_points: None,
            partitions,
        };
        assert!(check_config(None).is_ok());
        assert!(check_config(Some(&config(1))).is_ok());
        assert!(check_config(Some(&config(1024))).is_ok());
        assert!(check_config(Some(&config(0))).is_err());
        assert!(check_config(Some(&config(1025))).is_err());
    }
}
