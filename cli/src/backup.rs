//! `rota snapshot save|restore|info`: backups. A backup is the leader's snapshot file as
//! `SaveSnapshot` streams it; restoring seeds a new node's data directory from it.

use crate::args::SnapshotCmd;
use crate::config;
use crate::output::Output;
use anyhow::{bail, Context, Result};
use rota_client::Client;
use rota_raft::SnapshotSummary;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// `rota snapshot save|restore|info`.
pub async fn run(
    cmd: SnapshotCmd,
    client: impl FnOnce() -> Result<Client>,
    out: &Output,
) -> Result<()> {
    match cmd {
        SnapshotCmd::Save { file } => save(&client()?, &file, out).await,
        SnapshotCmd::Restore {
            file,
            data_dir,
            id,
            members,
        } => {
            let mut voters = config::parse_peers(&members)?;
            if voters.is_empty() {
                voters.insert(id, config::DEFAULT_LISTEN.to_owned());
            }
            let bytes = read(&file)?;
            let summary = rota_raft::backup::restore(&bytes, &data_dir, id, &voters)
                .await
                .with_context(|| {
                    format!("restoring {} into {}", file.display(), data_dir.display())
                })?;
            show(out, "restored", &summary, None);
            if !out.json {
                println!(
                    "node {id}'s data is in {}: start it there (rota agent --id {id} --data-dir ..., or rota dev --data-dir ... for one node)",
                    data_dir.display()
                );
            }
            Ok(())
        }
        SnapshotCmd::Info { file } => {
            let bytes = read(&file)?;
            let summary = rota_raft::inspect_snapshot(&bytes)
                .with_context(|| format!("{} is not a usable snapshot", file.display()))?;
            show(
                out,
                "snapshot",
                &summary,
                Some(&hex::encode(Sha256::digest(&bytes))),
            );
            Ok(())
        }
    }
}

fn read(file: &Path) -> Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("reading {}", file.display()))
}

/// Receives the backup, checks its size and sha256 against what the leader announced and
/// its contents as a node would, then writes it to a temporary file beside `file`, synced,
/// and renames it into place.
async fn save(client: &Client, file: &Path, out: &Output) -> Result<()> {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut partial = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("making a temporary file in {}", dir.display()))?;
    let mut stream = client.save_snapshot().await?;
    let mut info = None;
    // Kept in memory as it arrives: the check below reads it whole anyway, so the file is
    // written once and never read back.
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        if let Some(first) = chunk.info {
            info = Some(first);
        }
        bytes.extend_from_slice(&chunk.data);
    }
    let Some(info) = info else {
        bail!("the cluster sent no snapshot");
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let size = bytes.len() as u64;
    if size != info.size_bytes || sha256 != info.sha256 {
        bail!(
            "the backup arrived damaged: {size} bytes with sha256 {sha256}, announced {} bytes with {}",
            info.size_bytes,
            info.sha256
        );
    }
    let summary = rota_raft::inspect_snapshot(&bytes).context("the backup does not check")?;
    partial.write_all(&bytes)?;
    partial.as_file().sync_all()?;
    partial
        .persist(file)
        .with_context(|| format!("saving {}", file.display()))?;
    show(out, "saved", &summary, Some(&sha256));
    Ok(())
}

fn show(out: &Output, what: &str, summary: &SnapshotSummary, sha256: Option<&str>) {
    let (index, term) = summary
        .last_log_id
        .map_or((0, 0), |id| (id.index, id.leader_id.term));
    if out.json {
        let members: Vec<_> = summary
            .members
            .iter()
            .map(|(id, addr, voter)| serde_json::json!({"id": id, "addr": addr, "voter": voter}))
            .collect();
        let value = serde_json::json!({
            "lastLogIndex": index,
            "lastLogTerm": term,
            "stateDigest": summary.digest,
            "sha256": sha256,
            "jobs": summary.jobs,
            "archived": summary.archived,
            "members": members,
        });
        println!("{value}");
        return;
    }
    println!(
        "{what}: log index {index} (term {term}), state digest {}",
        summary.digest
    );
    if let Some(sha256) = sha256 {
        println!("sha256: {sha256}");
    }
    println!(
        "jobs: {} in memory, {} archived records",
        summary.jobs, summary.archived
    );
    let members: Vec<String> = summary
        .members
        .iter()
        .map(|(id, addr, voter)| format!("{id}={addr}{}", if *voter { "" } else { " (learner)" }))
        .collect();
    println!("members: {}", members.join(", "));
}
