//! openraft's own storage test suite, against the RocksDB store and the in-memory store.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageIOError;
use rota_raft::{open_db, MemLogStore, RocksLogStore, StateStore, StorageError, TypeConfig};
use tempfile::TempDir;

struct OnDisk;

impl StoreBuilder<TypeConfig, RocksLogStore, StateStore, TempDir> for OnDisk {
    async fn build(&self) -> Result<(TempDir, RocksLogStore, StateStore), StorageError> {
        let dir = TempDir::new().map_err(|e| StorageIOError::write(&e))?;
        let db = open_db(&dir.path().join("raft-log")).map_err(|e| StorageIOError::write(&e))?;
        let state = StateStore::open_dir(&dir.path().join("snapshots"))
            .map_err(|e| StorageIOError::write(&e))?;
        Ok((dir, RocksLogStore::new(db), state))
    }
}

struct InMemory;

impl StoreBuilder<TypeConfig, MemLogStore, StateStore, ()> for InMemory {
    async fn build(&self) -> Result<((), MemLogStore, StateStore), StorageError> {
        Ok(((), MemLogStore::new(), StateStore::in_memory()))
    }
}

#[test]
fn rocksdb_store_passes_openraft_suite() {
    if let Err(e) = Suite::test_all(OnDisk) {
        panic!("openraft's storage suite failed on RocksDB: {e}");
    }
}

#[test]
fn memory_store_passes_openraft_suite() {
    if let Err(e) = Suite::test_all(InMemory) {
        panic!("openraft's storage suite failed in memory: {e}");
    }
}
