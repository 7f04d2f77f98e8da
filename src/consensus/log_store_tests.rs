//! Unit tests of the Raft log file: torn tails, migration, replay ([`super`]).

use super::*;
use crate::consensus::log_file::PREALLOCATE;
use push_protocol::FORMAT_VERSION;

/// Log id `i` of term 1, node 1.
fn id(i: u64) -> LogId<u64> {
    LogId::new(openraft::CommittedLeaderId::new(1, 1), i)
}

/// A blank entry at index `i`.
fn entry(i: u64) -> Entry<TypeConfig> {
    Entry::<TypeConfig> {
        log_id: id(i),
        payload: openraft::EntryPayload::Blank,
    }
}

#[test]
fn torn_tail_is_cut_and_earlier_records_survive() {
    let mut bytes = frame_record(&Record::Truncate(5)).unwrap();
    bytes.extend(frame_record(&Record::Committed(None)).unwrap());
    let whole = bytes.len();
    bytes.extend(&frame_record(&Record::Truncate(9)).unwrap()[..5]);
    let (_, good, problem) = read_records(&bytes, FORMAT_VERSION);
    assert_eq!(good, whole);
    assert!(problem.unwrap().contains("torn"));

    let mut flipped = bytes[..whole].to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    let (_, good, problem) = read_records(&flipped, FORMAT_VERSION);
    assert!(good < whole);
    assert!(problem.unwrap().contains("checksum"));
}

#[tokio::test]
async fn the_committed_index_is_on_disk_when_saved() {
    // A restarted leader serves linearizable reads from the committed index it reads back:
    // one that lagged (written only with a later batch) let a read after a full restart
    // miss entries acknowledged before it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(LOG_FILE);
    let mut log = LogStore::open(dir.path()).unwrap();
    log.append_and_wait(vec![entry(1), entry(2)]).await.unwrap();
    log.save_committed(Some(id(2))).await.unwrap();
    // No later batch follows: the record must reach the file by itself.
    let committed_in_file = || {
        let bytes = std::fs::read(&file).unwrap();
        let (mem, _, problem) = read_records(&bytes[12..], FORMAT_VERSION);
        assert_eq!(problem, None);
        mem.committed
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while committed_in_file() != Some(id(2)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the committed index never reached the file"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    drop(log);
    let mut log = LogStore::open(dir.path()).unwrap();
    assert_eq!(log.read_committed().await.unwrap(), Some(id(2)));
}

#[tokio::test]
async fn the_commit_index_told_to_followers_is_cut_to_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogStore::open(dir.path()).unwrap().early_for(1);
    assert_eq!(log.commit_on_disk(Some(id(3))), None);
    log.append_and_wait(vec![entry(1), entry(2), entry(3)])
        .await
        .unwrap();
    assert_eq!(log.durable().last(), Some(3));
    assert_eq!(log.commit_on_disk(Some(id(2))), Some(id(2)));
    assert_eq!(log.commit_on_disk(Some(id(9))), Some(id(3)));
    assert_eq!(log.commit_on_disk(None), None);
    log.truncate(id(3)).await.unwrap();
    // The truncation is on disk once a later synced record is.
    log.save_vote(&openraft::Vote::new(2, 1)).await.unwrap();
    assert_eq!(log.durable().last(), Some(2));
    assert_eq!(log.commit_on_disk(Some(id(9))), Some(id(2)));
}

#[test]
fn the_zeros_past_the_last_record_end_the_records_without_a_problem() {
    let mut bytes = frame_record(&Record::Truncate(5)).unwrap();
    bytes.extend(frame_record(&Record::Committed(None)).unwrap());
    let whole = bytes.len();
    for zeros in [3, 8, 100] {
        let mut padded = bytes.clone();
        padded.resize(whole + zeros, 0);
        let (_, good, problem) = read_records(&padded, FORMAT_VERSION);
        assert_eq!((good, problem), (whole, None), "{zeros} zeros");
    }
}

#[tokio::test]
async fn the_file_is_allocated_ahead_and_a_record_left_past_the_zeros_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(LOG_FILE);
    let log = LogStore::open(dir.path()).unwrap();
    log.append_and_wait(vec![entry(1), entry(2)]).await.unwrap();
    assert!(std::fs::metadata(&file).unwrap().len() >= PREALLOCATE);
    drop(log);
    // As if a killed process left an unsynced record in the allocated space, after a page
    // that never reached the disk: it was never acknowledged and must not come back.
    let mut bytes = std::fs::read(&file).unwrap();
    let header = format::header(LOG_MAGIC).len();
    let (_, good, problem) = read_records(&bytes[header..], FORMAT_VERSION);
    assert_eq!(problem, None);
    let stale = frame_record(&Record::Append(vec![entry(3)])).unwrap();
    let at = header + good + 4096;
    bytes[at..at + stale.len()].copy_from_slice(&stale);
    std::fs::write(&file, &bytes).unwrap();

    let log = LogStore::open(dir.path()).unwrap();
    assert_eq!(log.mem().last_log_id(), Some(id(2)));
    log.append_and_wait(vec![entry(3)]).await.unwrap();
    drop(log);
    let bytes = std::fs::read(&file).unwrap();
    // Entry 3's own record (a few dozen bytes) went where the records ended; the stale copy
    // 4 KiB further on is gone.
    assert!(bytes[at..at + stale.len()].iter().all(|b| *b == 0));
    let log = LogStore::open(dir.path()).unwrap();
    assert_eq!(log.mem().last_log_id(), Some(id(3)));
}
