//! Versions on disk: a Raft log of format 1 (bare postcard entries, no format named, as
//! rota wrote before issue 17; `fixtures/log-format-1.bin`) opens, is rewritten to this
//! build's format and reads the same entries; a log, an entry or a snapshot of a newer
//! format is refused with a message that says so.

use openraft::storage::RaftLogStorage;
use openraft::{EntryPayload, RaftLogReader};
use rota_raft::{open_db, Entry, RocksLogStore, Write};
use rota_state_machine::Command;
use std::path::Path;

/// The fixture's records: index (u64, big-endian), length (u32, big-endian), the entry as
/// format 1 kept it.
fn fixture_entries() -> Vec<(u64, Vec<u8>)> {
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/log-format-1.bin"),
    )
    .expect("the fixture");
    let mut rest = bytes.as_slice();
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let (index, tail) = rest.split_at(8);
        let (len, tail) = tail.split_at(4);
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        let (entry, tail) = tail.split_at(len);
        entries.push((
            u64::from_be_bytes(index.try_into().expect("8 bytes")),
            entry.to_vec(),
        ));
        rest = tail;
    }
    entries
}

/// A log database laid out as format 1 left it: the two families, the entries, no format.
fn write_format_1(dir: &Path, entries: &[(u64, Vec<u8>)]) {
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    let db = rocksdb::DB::open_cf(&options, dir, ["logs", "meta"]).expect("rocksdb");
    let logs = db.cf_handle("logs").expect("logs");
    for (index, entry) in entries {
        db.put_cf(logs, index.to_be_bytes(), entry).expect("put");
    }
}

fn set_format(dir: &Path, format: u8) {
    let options = rocksdb::Options::default();
    let db = rocksdb::DB::open_cf(&options, dir, ["logs", "meta"]).expect("rocksdb");
    let meta = db.cf_handle("meta").expect("meta");
    db.put_cf(meta, b"format", [format]).expect("put");
}

#[tokio::test]
async fn a_format_1_log_opens_rewritten_with_the_same_entries() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let fixture = fixture_entries();
    assert_eq!(fixture.len(), 4, "blank, membership, tick, enqueue");
    write_format_1(dir.path(), &fixture);

    let mut log = RocksLogStore::new(open_db(dir.path()).expect("a format-1 log opens"));
    let entries: Vec<Entry> = log.try_get_log_entries(0..100).await.expect("entries");
    let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
    assert_eq!(indexes, vec![1, 2, 3, 4]);
    assert!(matches!(entries[0].payload, EntryPayload::Blank));
    assert!(matches!(entries[1].payload, EntryPayload::Membership(_)));
    let EntryPayload::Normal(tick) = &entries[2].payload else {
        panic!("entry 3 is a batch");
    };
    assert!(matches!(tick.writes[..], [Write::Command(Command::Tick)]));
    let EntryPayload::Normal(enqueue) = &entries[3].payload else {
        panic!("entry 4 is a batch");
    };
    let [Write::Command(Command::Enqueue { spec })] = &enqueue.writes[..] else {
        panic!("entry 4 enqueues");
    };
    assert_eq!(spec.payload, b"written by format 1");
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_log_id.map(|id| id.index), Some(4));
    drop(log);

    // Rewritten in place: each entry now starts with its format byte, and it opens again.
    {
        let options = rocksdb::Options::default();
        let db = rocksdb::DB::open_cf(&options, dir.path(), ["logs", "meta"]).expect("rocksdb");
        let logs = db.cf_handle("logs").expect("logs");
        for (index, old) in &fixture {
            let now = db
                .get_cf(logs, index.to_be_bytes())
                .expect("get")
                .expect("kept");
            assert_eq!(now[0], rota_raft::LOG_FORMAT);
            assert_eq!(&now[1..], &old[..]);
        }
    }
    let mut again = RocksLogStore::new(open_db(dir.path()).expect("opens again"));
    assert_eq!(
        again
            .try_get_log_entries(0..100)
            .await
            .expect("entries")
            .len(),
        4
    );
}

#[test]
fn a_log_of_a_newer_format_is_refused_saying_so() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    drop(open_db(dir.path()).expect("a new log"));
    set_format(dir.path(), rota_raft::LOG_FORMAT + 1);
    let refused = open_db(dir.path()).expect_err("a newer log");
    assert!(
        refused.to_string().contains("newer than this rota reads"),
        "{refused}"
    );
}

#[tokio::test]
async fn an_entry_of_a_newer_format_is_refused_saying_so() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let fixture = fixture_entries();
    write_format_1(dir.path(), &fixture);
    drop(open_db(dir.path()).expect("opens"));
    {
        let options = rocksdb::Options::default();
        let db = rocksdb::DB::open_cf(&options, dir.path(), ["logs", "meta"]).expect("rocksdb");
        let logs = db.cf_handle("logs").expect("logs");
        let mut newer = vec![rota_raft::LOG_FORMAT + 1];
        newer.extend_from_slice(&fixture[3].1);
        db.put_cf(logs, 4u64.to_be_bytes(), newer).expect("put");
    }
    let mut log = RocksLogStore::new(open_db(dir.path()).expect("opens"));
    let refused = log
        .try_get_log_entries(0..100)
        .await
        .expect_err("a newer entry");
    assert!(
        refused.to_string().contains("newer than this rota reads"),
        "{refused}"
    );
}

#[test]
fn a_snapshot_of_a_newer_container_format_is_refused_saying_so() {
    let mut bytes = b"ROTASNP9".to_vec();
    bytes.extend_from_slice(&[0u8; 64]);
    let refused = rota_raft::inspect_snapshot(&bytes).expect_err("a newer snapshot");
    assert!(
        refused.to_string().contains("newer than this rota reads"),
        "{refused}"
    );
}
