//! `SaveSnapshot`: a backup of the cluster as the leader's snapshot file, streamed. The
//! leader first confirms it leads and has applied everything committed before the call (a
//! linearizable read), then builds a snapshot covering at least that, and sends the file it
//! keeps, which a `rota snapshot restore` seeds a new cluster from.

use super::Api;
use crate::status;
use rota_client::proto as pb;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// Longest the leader waits for the snapshot to be built.
const BUILD_TIMEOUT: Duration = Duration::from_secs(120);
/// Bytes of the file per message.
const CHUNK_BYTES: usize = 1024 * 1024;

/// The stream `SaveSnapshot` answers with.
pub(super) type Chunks = ReceiverStream<Result<pb::SnapshotChunk, Status>>;

/// Builds the snapshot and streams it; see the module above.
pub(super) async fn save(api: &Api) -> Result<Chunks, Status> {
    let committed = api
        .raft
        .read_linearizable(|applied| applied.last_applied.map_or(0, |id| id.index))
        .await
        .map_err(|e| status::cluster(&e))?;
    api.raft
        .snapshot_now(BUILD_TIMEOUT)
        .await
        .map_err(|e| status::cluster(&e))?;
    // Opening the file and hashing it are blocking reads: off the runtime. The open file
    // stays this snapshot's even if a newer one replaces it meanwhile.
    let raft = api.raft.clone();
    let (covers, (size_bytes, sha256), mut file) = tokio::task::spawn_blocking(move || {
        let (mut file, covers) = raft
            .open_snapshot()
            .map_err(|e| format!("opening the snapshot: {e}"))?
            .ok_or("no snapshot after building one")?;
        let covers = covers.ok_or("the snapshot covers no entry")?;
        let mut hasher = Sha256::new();
        let size = std::io::copy(&mut file, &mut hasher)
            .and_then(|size| file.seek(SeekFrom::Start(0)).map(|_| size))
            .map_err(|e| format!("reading the snapshot: {e}"))?;
        Ok::<_, String>((covers, (size, hex::encode(hasher.finalize())), file))
    })
    .await
    .map_err(|e| status::internal(e.to_string()))?
    .map_err(status::internal)?;
    if covers.index < committed {
        return Err(status::internal(format!(
            "the snapshot kept covers entry {} only, not {committed}",
            covers.index
        )));
    }
    let info = pb::SnapshotInfo {
        last_log_index: covers.index,
        last_log_term: covers.leader_id.term,
        size_bytes,
        sha256,
    };
    tracing::info!(
        index = covers.index,
        size_bytes,
        "snapshot saved for a backup"
    );
    let (send, chunks) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut info = Some(info);
        loop {
            let mut data = vec![0u8; CHUNK_BYTES];
            let read = match file.read(&mut data) {
                Ok(read) => read,
                Err(e) => {
                    let _ = send
                        .blocking_send(Err(status::internal(format!("reading the snapshot: {e}"))));
                    return;
                }
            };
            if read == 0 && info.is_none() {
                return;
            }
            data.truncate(read);
            let chunk = pb::SnapshotChunk {
                info: info.take(),
                data,
            };
            // The caller went away: stop reading.
            if send.blocking_send(Ok(chunk)).is_err() || read == 0 {
                return;
            }
        }
    });
    Ok(ReceiverStream::new(chunks))
}
