//! `rota audit keygen|export|verify`: signed audit bundles (docs/audit.md).

use crate::args::{AuditCmd, Global};
use crate::output::Output;
use anyhow::{bail, Context, Result};
use rota_client::proto as pb;
use rota_client::Client;
use rota_node::audit::{dsse, format};
use serde_json::json;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// `rota audit ...`; `client` is made only for an export.
pub async fn audit(
    cmd: AuditCmd,
    global: &Global,
    client: impl FnOnce() -> Result<Client>,
    out: &Output,
) -> Result<()> {
    match cmd {
        AuditCmd::Keygen { out: dir } => {
            let key = format::generate().context("drawing a key from the system's randomness")?;
            std::fs::create_dir_all(&dir).with_context(|| format!("making {}", dir.display()))?;
            let secret = dir.join("audit.key");
            let public = dir.join("audit.pub");
            if secret.exists() {
                bail!("{} exists: not overwritten", secret.display());
            }
            write_secret(&secret, &format::hex_line(&key.to_bytes()))?;
            std::fs::write(&public, format::hex_line(key.verifying_key().as_bytes()))
                .with_context(|| format!("writing {}", public.display()))?;
            let id = format::key_id(&key.verifying_key());
            out.show(
                json!({"key_id": id, "secret": secret, "public": public}),
                || {
                    format!(
                        "audit key {id}: {} (secret: give it to the nodes' --audit-key), {} (for verify)",
                        secret.display(),
                        public.display()
                    )
                },
            );
        }
        AuditCmd::Export {
            since,
            until,
            tenant,
            out: dir,
        } => {
            if dir.exists() {
                bail!(
                    "{} exists: a bundle goes into a new directory or tar file",
                    dir.display()
                );
            }
            let answer = client()?
                .export_audit(pb::ExportAuditRequest {
                    since_ms: since.map(|t| millis(t, "--since")).transpose()?,
                    until_ms: until.map(|t| millis(t, "--until")).transpose()?,
                    tenant,
                    read: global.read_options(),
                })
                .await?;
            let mut files = format::Files::new();
            for file in answer.files {
                if !format::allowed_name(&file.name) {
                    bail!("the node sent a file named {:?}: not written", file.name);
                }
                files.insert(file.name, file.content);
            }
            let key = answer.key_id;
            write_bundle(&dir, &files)
                .with_context(|| format!("writing the bundle into {}", dir.display()))?;
            let count = |name: &str| {
                files
                    .get(name)
                    .map_or(0, |bytes| bytes.iter().filter(|b| **b == b'\n').count())
            };
            out.show(
                json!({"dir": dir, "key_id": key, "jobs": count("jobs.jsonl"), "history": count("history.jsonl")}),
                || {
                    format!(
                        "bundle in {}: {} jobs, {} history lines, signed by key {key}",
                        dir.display(),
                        count("jobs.jsonl"),
                        count("history.jsonl")
                    )
                },
            );
        }
        AuditCmd::VerifyJob { envelope, key } => {
            let public = public_key(&key)?;
            let json = std::fs::read(&envelope)
                .with_context(|| format!("reading {}", envelope.display()))?;
            let payload = dsse::open(&json, &public, dsse::JOB_PAYLOAD_TYPE)
                .map_err(|e| anyhow::anyhow!("the signed job does not verify: {e}"))?;
            let statement: serde_json::Value =
                serde_json::from_slice(&payload).context("the signed payload is not JSON")?;
            if statement["format"] != dsse::JOB_STATEMENT {
                bail!(
                    "the signed payload is {}, not a {} statement",
                    statement["format"],
                    dsse::JOB_STATEMENT
                );
            }
            let id = format::key_id(&public);
            out.show(
                json!({"ok": true, "key_id": id, "statement": statement}),
                || {
                    format!(
                        "signed job verifies: key {id}, read at log index {}\n{}",
                        statement["applied_index"],
                        serde_json::to_string_pretty(&statement["job"]).unwrap_or_default()
                    )
                },
            );
        }
        AuditCmd::Verify { bundle, key } => {
            let verified = verify(&bundle, &key)?;
            let m = &verified.manifest;
            out.show(
                json!({
                    "ok": true,
                    "key_id": verified.key_id,
                    "counts": m.counts,
                    "since_ms": m.since_ms,
                    "until_ms": m.until_ms,
                    "applied_index": m.applied_index,
                }),
                || {
                    format!(
                        "bundle verifies: signed by key {}, {} jobs, {} history lines, log index {} to {}",
                        verified.key_id,
                        m.counts.get("jobs").copied().unwrap_or(0),
                        m.counts.get("history").copied().unwrap_or(0),
                        m.first_log_index.map_or("-".to_owned(), |i| i.to_string()),
                        m.last_log_index.map_or("-".to_owned(), |i| i.to_string()),
                    )
                },
            );
        }
    }
    Ok(())
}

/// The audit public key in `path` (audit.pub).
fn public_key(path: &Path) -> Result<ed25519_dalek::VerifyingKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    format::verifying_key(&text).with_context(|| {
        format!(
            "{} does not hold an audit public key (64 hex digits)",
            path.display()
        )
    })
}

/// Whether `path` names a tar archive rather than a directory.
fn is_tar(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("tar"))
}

/// Writes a bundle into a new directory, or a new tar archive when `out` ends in `.tar`.
fn write_bundle(out: &Path, files: &format::Files) -> std::io::Result<()> {
    if !is_tar(out) {
        return format::write_dir(out, files);
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)?;
    let mut writer = std::io::BufWriter::new(file);
    format::write_tar(&mut writer, files)?;
    writer.into_inner().map_err(|e| e.into_error())?.sync_all()
}

fn verify(bundle: &Path, key: &Path) -> Result<format::Verified> {
    let public = public_key(key)?;
    let files = if bundle.is_file() {
        let file =
            std::fs::File::open(bundle).with_context(|| format!("opening {}", bundle.display()))?;
        format::read_tar(std::io::BufReader::new(file))
            .with_context(|| format!("reading the tar archive {}", bundle.display()))?
    } else {
        format::read_dir(bundle)
            .with_context(|| format!("reading the bundle in {}", bundle.display()))?
    };
    format::verify(&files, &public)
        .map_err(|broken| anyhow::anyhow!("the bundle does not verify: {broken}"))
}

fn millis(t: humantime::Timestamp, flag: &str) -> Result<u64> {
    SystemTime::from(t)
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .with_context(|| format!("{flag} is out of range"))
}

/// Writes a secret readable by its owner only.
fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
