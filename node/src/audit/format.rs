//! The audit bundle's format, written by the node and checked offline by `rota audit
//! verify`.
//!
//! A bundle is a set of JSON-lines files, a `manifest.json` and `signatures/KEY_ID.sig`.
//! Each line of a file is one JSON object whose first field, `prev`, is the SHA-256 (hex)
//! of the line before it (64 zeros for the first line): a changed, removed or added line
//! breaks the chain at the line after it, so a check names the line. The manifest lists
//! each file with its SHA-256, its line count and the SHA-256 of its last line (which
//! nothing after it covers), the counts and the range the bundle covers; the signature is
//! ed25519 over the manifest's bytes, in hex. Key ids are the first 16 hex digits of the
//! SHA-256 of the public key.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// The manifest's `format`.
pub const FORMAT: &str = "rota-audit/1";

/// The files of a bundle, in the order they are written.
pub const FILES: [&str; 5] = [
    "jobs.jsonl",
    "history.jsonl",
    "throttles.jsonl",
    "incidents.jsonl",
    "replays.jsonl",
];

/// The `prev` of a file's first line.
pub const FIRST_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A key's id: the first 16 hex digits of the SHA-256 of its public key.
pub fn key_id(key: &VerifyingKey) -> String {
    sha256_hex(key.as_bytes())[..16].to_owned()
}

/// A JSON-lines file whose lines chain by `prev`.
#[derive(Default)]
pub struct ChainedFile {
    bytes: Vec<u8>,
    lines: u64,
    last: Option<String>,
}

impl ChainedFile {
    /// Appends `record` (a JSON object) as a line, `prev` first.
    pub fn push(&mut self, record: &impl Serialize) -> Result<(), serde_json::Error> {
        let body = serde_json::to_string(record)?;
        let prev = self.last.as_deref().unwrap_or(FIRST_PREV);
        let mut line = format!("{{\"prev\":\"{prev}\"");
        // `body` is an object: `{}` or `{"field":...}`.
        if body.len() > 2 {
            line.push(',');
            line.push_str(&body[1..body.len() - 1]);
        }
        line.push('}');
        self.last = Some(sha256_hex(line.as_bytes()));
        self.bytes.extend_from_slice(line.as_bytes());
        self.bytes.push(b'\n');
        self.lines += 1;
        Ok(())
    }

    /// Its size so far, in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether no line was pushed.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The file's entry in the manifest, and its bytes.
    pub fn finish(self, name: &str) -> (FileEntry, Vec<u8>) {
        let entry = FileEntry {
            name: name.to_owned(),
            sha256: sha256_hex(&self.bytes),
            lines: self.lines,
            last_line_sha256: self.last.unwrap_or_else(|| FIRST_PREV.to_owned()),
        };
        (entry, self.bytes)
    }
}

/// The finished files of a bundle, their manifest entries and their line counts by kind
/// (a file's name without `.jsonl`).
pub type Assembled = (Files, Vec<FileEntry>, BTreeMap<String, u64>);

/// Finishes `files` for a manifest.
pub fn assemble(files: Vec<(&str, ChainedFile)>) -> Assembled {
    let mut out = Files::new();
    let mut entries = Vec::new();
    let mut counts = BTreeMap::new();
    for (name, file) in files {
        let (entry, bytes) = file.finish(name);
        counts.insert(name.trim_end_matches(".jsonl").to_owned(), entry.lines);
        entries.push(entry);
        out.insert(name.to_owned(), bytes);
    }
    (out, entries, counts)
}

/// One file as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its name in the bundle.
    pub name: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// How many lines it has.
    pub lines: u64,
    /// SHA-256 of its last line (64 zeros when empty).
    pub last_line_sha256: String,
}

/// What a bundle covers and holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `FORMAT`.
    pub format: String,
    /// Jobs created at or after this log time.
    pub since_ms: u64,
    /// And before this one.
    pub until_ms: u64,
    /// Only this tenant's jobs, if set.
    pub tenant: Option<String>,
    /// The cluster's id (none before its first leader named it).
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// The cluster's voters when the bundle was made.
    pub voters: Vec<u64>,
    /// The log index the exporting replica had applied.
    pub applied_index: u64,
    /// Its log time.
    pub log_time_ms: u64,
    /// The lowest and highest log index of an event in the bundle.
    pub first_log_index: Option<u64>,
    pub last_log_index: Option<u64>,
    /// Lines per file, by kind.
    pub counts: BTreeMap<String, u64>,
    /// Every file but the manifest and the signatures.
    pub files: Vec<FileEntry>,
}

/// A bundle in memory: file names (with `signatures/` for signatures) and bytes.
pub type Files = BTreeMap<String, Vec<u8>>;

/// Adds the manifest and `key`'s signature of it to `files`.
pub fn seal(
    mut files: Files,
    manifest: &Manifest,
    key: &SigningKey,
) -> Result<Files, serde_json::Error> {
    let mut bytes = serde_json::to_vec_pretty(manifest)?;
    bytes.push(b'\n');
    let signature = key.sign(&bytes);
    let id = key_id(&key.verifying_key());
    files.insert(
        format!("signatures/{id}.sig"),
        format!("{}\n", hex::encode(signature.to_bytes())).into_bytes(),
    );
    files.insert("manifest.json".to_owned(), bytes);
    Ok(files)
}

/// Why a bundle does not verify; the message names the file and, where it can, the line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Broken(pub String);

fn broken(message: impl Into<String>) -> Broken {
    Broken(message.into())
}

/// What a verified bundle holds.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    /// The key that signed it.
    pub key_id: String,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Checks a bundle against `key`: the manifest's signature, every listed file's chain,
/// line count, last line and digest, no file missing or extra, the counts, and that every
/// history and replay line names a job of the bundle.
pub fn verify(files: &Files, key: &VerifyingKey) -> Result<Verified, Broken> {
    let id = key_id(key);
    let manifest_bytes = files
        .get("manifest.json")
        .ok_or_else(|| broken("manifest.json: missing"))?;
    let signature_name = format!("signatures/{id}.sig");
    let Some(signature) = files.get(&signature_name) else {
        let others: Vec<&str> = files
            .keys()
            .filter_map(|k| k.strip_prefix("signatures/"))
            .collect();
        return Err(broken(format!(
            "{signature_name}: missing: no signature by key {id} (the bundle has {})",
            if others.is_empty() {
                "none".to_owned()
            } else {
                others.join(", ")
            }
        )));
    };
    let signature = std::str::from_utf8(signature)
        .ok()
        .and_then(|text| hex::decode(text.trim()).ok())
        .and_then(|bytes| Signature::from_slice(&bytes).ok())
        .ok_or_else(|| broken(format!("{signature_name}: not an ed25519 signature in hex")))?;
    key.verify_strict(manifest_bytes, &signature).map_err(|_| {
        broken(format!(
            "manifest.json: the signature by key {id} does not verify: the manifest was changed, or signed with another key"
        ))
    })?;
    let manifest: Manifest = serde_json::from_slice(manifest_bytes)
        .map_err(|e| broken(format!("manifest.json: {e}")))?;
    if manifest.format != FORMAT {
        return Err(broken(format!(
            "manifest.json: format {:?}, this build reads {FORMAT}",
            manifest.format
        )));
    }
    let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
    for name in files.keys() {
        let signature = name
            .strip_prefix("signatures/")
            .and_then(|file| file.strip_suffix(".sig"))
            .is_some_and(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()));
        let known = name == "manifest.json" || signature || listed.contains(name.as_str());
        if !known {
            return Err(broken(format!("{name}: not in the manifest")));
        }
    }
    let mut lines_of: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    for entry in &manifest.files {
        let bytes = files
            .get(&entry.name)
            .ok_or_else(|| broken(format!("{}: missing", entry.name)))?;
        let lines = check_chain(&entry.name, bytes, entry)?;
        if sha256_hex(bytes) != entry.sha256 {
            return Err(broken(format!(
                "{}: its SHA-256 is not the manifest's",
                entry.name
            )));
        }
        let counted = manifest.counts.get(entry.name.trim_end_matches(".jsonl"));
        if counted != Some(&entry.lines) {
            return Err(broken(format!(
                "manifest.json: counts {} for {}, the file has {} lines",
                counted.map_or("none".to_owned(), u64::to_string),
                entry.name,
                entry.lines
            )));
        }
        lines_of.insert(entry.name.as_str(), lines);
    }
    let jobs: BTreeSet<u64> = lines_of
        .get("jobs.jsonl")
        .map(|lines| lines.iter().filter_map(|l| l["job_id"].as_u64()).collect())
        .unwrap_or_default();
    for (file, field) in [("history.jsonl", "job_id"), ("replays.jsonl", "replay")] {
        for (n, line) in lines_of.get(file).into_iter().flatten().enumerate() {
            let job = line[field].as_u64();
            if !job.is_some_and(|job| jobs.contains(&job)) {
                return Err(broken(format!(
                    "{file} line {}: names job {} that is not in jobs.jsonl",
                    n + 1,
                    job.map_or("none".to_owned(), |j| j.to_string())
                )));
            }
        }
    }
    Ok(Verified {
        key_id: id,
        manifest,
    })
}

/// Walks `bytes`' lines: each must be a JSON object whose `prev` is the hash of the line
/// before; the count and the last line must be the manifest's.
fn check_chain(
    name: &str,
    bytes: &[u8],
    entry: &FileEntry,
) -> Result<Vec<serde_json::Value>, Broken> {
    let lines: Vec<&[u8]> = match bytes.strip_suffix(b"\n") {
        Some(body) => body.split(|b| *b == b'\n').collect(),
        None if bytes.is_empty() => Vec::new(),
        None => return Err(broken(format!("{name}: the last line does not end"))),
    };
    let mut prev = FIRST_PREV.to_owned();
    let mut parsed = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let number = n + 1;
        if number as u64 > entry.lines {
            return Err(broken(format!(
                "{name} line {number}: a line the manifest does not count (it counts {})",
                entry.lines
            )));
        }
        let value: serde_json::Value = serde_json::from_slice(line)
            .map_err(|e| broken(format!("{name} line {number}: not JSON: {e}")))?;
        if value["prev"].as_str() != Some(prev.as_str()) {
            return Err(broken(match number {
                1 => format!(
                    "{name} line 1: does not start the chain: it was changed, or lines before it removed"
                ),
                _ => format!(
                    "{name} line {}: changed, or a line was removed or added after it (line {number} does not follow it)",
                    number - 1
                ),
            }));
        }
        prev = sha256_hex(line);
        parsed.push(value);
    }
    if (parsed.len() as u64) < entry.lines {
        return Err(broken(format!(
            "{name}: {} lines, the manifest counts {}: lines were removed from its end",
            parsed.len(),
            entry.lines
        )));
    }
    if prev != entry.last_line_sha256 {
        return Err(broken(format!(
            "{name} line {}: changed (the last line, which the manifest covers), or the file replaced by another",
            parsed.len()
        )));
    }
    Ok(parsed)
}

/// Reads a bundle directory.
pub fn read_dir(dir: &Path) -> std::io::Result<Files> {
    let mut files = Files::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            for inner in std::fs::read_dir(entry.path())? {
                let inner = inner?;
                let inner_name = inner.file_name().to_string_lossy().into_owned();
                files.insert(format!("{name}/{inner_name}"), std::fs::read(inner.path())?);
            }
        } else {
            files.insert(name, std::fs::read(entry.path())?);
        }
    }
    Ok(files)
}

/// Writes a bundle into `dir` (made if missing; it must hold no bundle already).
pub fn write_dir(dir: &Path, files: &Files) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("signatures"))?;
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

/// The most bytes `read_tar` takes from a bundle: well past what an export writes
/// (`MAX_BUNDLE_BYTES`), short of what would exhaust memory.
pub const MAX_TAR_BYTES: u64 = 256 * 1024 * 1024;

/// The most entries `read_tar` reads: a bundle has a handful of files.
pub const MAX_TAR_ENTRIES: usize = 64;

/// Writes a bundle as one tar archive: its files in name order, each owned by root, mode
/// 0644 and dated 1970, so that the same bundle gives the same bytes.
pub fn write_tar(out: impl std::io::Write, files: &Files) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(out);
    for (name, bytes) in files {
        let mut header = tar::Header::new_ustar();
        header.set_path(name)?;
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar.append(&header, bytes.as_slice())?;
    }
    tar.into_inner()?.flush()
}

/// Reads a bundle from a tar archive, into memory only (nothing is unpacked): its regular
/// files by name; directories are passed over, and anything else, a name twice, or more
/// than `MAX_TAR_BYTES` refused.
pub fn read_tar(input: impl std::io::Read) -> std::io::Result<Files> {
    use std::io::{Error, ErrorKind, Read};
    let invalid = |what: String| Error::new(ErrorKind::InvalidData, what);
    let mut files = Files::new();
    let mut total: u64 = 0;
    // Headers and extensions (long names, PAX) count too: the whole archive is bounded.
    let mut tar = tar::Archive::new(input.take(MAX_TAR_BYTES + 1024 * 1024));
    for (count, entry) in tar.entries()?.enumerate() {
        if count >= MAX_TAR_ENTRIES {
            return Err(invalid(format!(
                "more than {MAX_TAR_ENTRIES} entries: not an audit bundle"
            )));
        }
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./").to_owned();
        match entry.header().entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular => {}
            other => return Err(invalid(format!("{name}: a {other:?} entry, not a file"))),
        }
        total = total.saturating_add(entry.size());
        if total > MAX_TAR_BYTES {
            return Err(invalid(format!(
                "more than {MAX_TAR_BYTES} bytes: not an audit bundle"
            )));
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        if files.insert(name.clone(), bytes).is_some() {
            return Err(invalid(format!("{name}: in the archive twice")));
        }
    }
    Ok(files)
}

/// A key as `rota audit keygen` writes it: 64 hex digits (the seed or the public key) on
/// one line.
pub fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text.trim()).ok()?;
    bytes.try_into().ok()
}

/// A signing key from its file.
pub fn signing_key(text: &str) -> Option<SigningKey> {
    parse_hex32(text).map(|seed| SigningKey::from_bytes(&seed))
}

/// A public key from its file.
pub fn verifying_key(text: &str) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(&parse_hex32(text)?).ok()
}

/// A new signing key from the system's randomness.
pub fn generate() -> Result<SigningKey, getrandom::Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A key's hex form, for its file.
pub fn hex_line(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(65);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out.push('\n');
    out
}

/// Whether `name` is a file a bundle may hold: a data file, the manifest, or a signature
/// named by a key id. What an export writes is checked against this.
pub fn allowed_name(name: &str) -> bool {
    FILES.contains(&name)
        || name == "manifest.json"
        || name
            .strip_prefix("signatures/")
            .and_then(|file| file.strip_suffix(".sig"))
            .is_some_and(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `files` sealed by `key` under a manifest of a window [0, 100).
    fn sealed(files: Vec<(&str, ChainedFile)>, key: &SigningKey) -> Files {
        let (files, entries, counts) = assemble(files);
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            since_ms: 0,
            until_ms: 100,
            tenant: None,
            cluster_id: Some("0123456789abcdef0123456789abcdef".to_owned()),
            voters: vec![1],
            applied_index: 20,
            log_time_ms: 99,
            first_log_index: Some(10),
            last_log_index: Some(12),
            counts,
            files: entries,
        };
        seal(files, &manifest, key).unwrap()
    }

    fn bundle(key: &SigningKey) -> Files {
        let mut jobs = ChainedFile::default();
        let mut history = ChainedFile::default();
        for id in 0..3u64 {
            jobs.push(&json!({"job_id": id, "tenant": "acme"})).unwrap();
            history
                .push(&json!({"job_id": id, "log_index": 10 + id, "kind": "enqueued"}))
                .unwrap();
        }
        let replays = ChainedFile::default();
        sealed(
            vec![
                ("jobs.jsonl", jobs),
                ("history.jsonl", history),
                ("replays.jsonl", replays),
            ],
            key,
        )
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn refusal(files: &Files, key: &SigningKey) -> String {
        verify(files, &key.verifying_key()).unwrap_err().0
    }

    fn lines(files: &Files, name: &str) -> Vec<String> {
        String::from_utf8(files[name].clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn set_lines(files: &mut Files, name: &str, lines: &[String]) {
        let mut text = lines.join("\n");
        if !lines.is_empty() {
            text.push('\n');
        }
        files.insert(name.to_owned(), text.into_bytes());
    }

    #[test]
    fn a_sealed_bundle_verifies_with_its_key() {
        let signer = key(1);
        let files = bundle(&signer);
        let verified = verify(&files, &signer.verifying_key()).unwrap();
        assert_eq!(verified.key_id, key_id(&signer.verifying_key()));
        assert_eq!(verified.manifest.counts["jobs"], 3);
        // Deterministic: the same content and key give the same bytes, signature included.
        assert_eq!(bundle(&signer), files);
    }

    #[test]
    fn a_bundle_as_a_tar_reads_back_the_same_and_writes_the_same_bytes() {
        let signer = key(1);
        let files = bundle(&signer);
        let mut tar = Vec::new();
        write_tar(&mut tar, &files).unwrap();
        let mut again = Vec::new();
        write_tar(&mut again, &bundle(&signer)).unwrap();
        assert_eq!(tar, again, "the same bundle, the same bytes");
        let read = read_tar(tar.as_slice()).unwrap();
        assert_eq!(read, files);
        assert!(verify(&read, &signer.verifying_key()).is_ok());

        // A symlink (or anything but a file) is refused, not followed.
        let mut odd = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_path("jobs.jsonl").unwrap();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_link_name("/etc/passwd").unwrap();
        header.set_size(0);
        header.set_cksum();
        odd.append(&header, std::io::empty()).unwrap();
        let odd = odd.into_inner().unwrap();
        let refused = read_tar(odd.as_slice()).unwrap_err();
        assert!(refused.to_string().contains("jobs.jsonl"), "{refused}");
    }

    #[test]
    fn a_changed_byte_in_a_line_is_named_by_file_and_line() {
        let signer = key(1);
        let mut files = bundle(&signer);
        let mut jobs = lines(&files, "jobs.jsonl");
        jobs[1] = jobs[1].replace("acme", "acne");
        set_lines(&mut files, "jobs.jsonl", &jobs);
        assert_eq!(
            refusal(&files, &signer),
            "jobs.jsonl line 2: changed, or a line was removed or added after it (line 3 does not follow it)"
        );
        let mut files = bundle(&signer);
        let mut jobs = lines(&files, "jobs.jsonl");
        jobs[2] = jobs[2].replace("acme", "acne");
        set_lines(&mut files, "jobs.jsonl", &jobs);
        assert!(refusal(&files, &signer).starts_with("jobs.jsonl line 3: changed"));
    }

    #[test]
    fn removed_and_added_lines_are_named() {
        let signer = key(1);
        let mut files = bundle(&signer);
        let mut history = lines(&files, "history.jsonl");
        history.remove(1);
        set_lines(&mut files, "history.jsonl", &history);
        assert!(
            refusal(&files, &signer)
                .starts_with("history.jsonl line 1: changed, or a line was removed"),
            "{}",
            refusal(&files, &signer)
        );
        let mut files = bundle(&signer);
        let mut history = lines(&files, "history.jsonl");
        history.pop();
        set_lines(&mut files, "history.jsonl", &history);
        assert!(refusal(&files, &signer).contains("lines were removed from its end"));
        let mut files = bundle(&signer);
        let mut history = lines(&files, "history.jsonl");
        history.push(history[2].clone());
        set_lines(&mut files, "history.jsonl", &history);
        assert!(refusal(&files, &signer)
            .starts_with("history.jsonl line 4: a line the manifest does not count"));
    }

    #[test]
    fn swapped_missing_and_extra_files_are_named() {
        let signer = key(1);
        let mut files = bundle(&signer);
        let jobs = files["jobs.jsonl"].clone();
        let history = files["history.jsonl"].clone();
        files.insert("jobs.jsonl".to_owned(), history);
        files.insert("history.jsonl".to_owned(), jobs);
        assert!(
            refusal(&files, &signer).starts_with("jobs.jsonl"),
            "{}",
            refusal(&files, &signer)
        );
        let mut files = bundle(&signer);
        files.remove("history.jsonl");
        assert_eq!(refusal(&files, &signer), "history.jsonl: missing");
        let mut files = bundle(&signer);
        files.insert("notes.txt".to_owned(), b"hi".to_vec());
        assert_eq!(refusal(&files, &signer), "notes.txt: not in the manifest");
    }

    #[test]
    fn a_manifest_changed_or_signed_by_another_key_is_refused() {
        let signer = key(1);
        let other = key(2);
        // Re-signed by another key: the verifier's key finds no signature of its own.
        let mut files = bundle(&signer);
        let manifest = files["manifest.json"].clone();
        let forged = String::from_utf8(manifest)
            .unwrap()
            .replace("\"until_ms\": 100", "\"until_ms\": 200");
        files.retain(|name, _| !name.starts_with("signatures/"));
        files.insert("manifest.json".to_owned(), forged.clone().into_bytes());
        let signature = other.sign(forged.as_bytes());
        files.insert(
            format!("signatures/{}.sig", key_id(&other.verifying_key())),
            hex::encode(signature.to_bytes()).into_bytes(),
        );
        let refused = refusal(&files, &signer);
        assert!(refused.contains("no signature by key"), "{refused}");
        // The other key's signature put under the signer's name does not verify.
        files.insert(
            format!("signatures/{}.sig", key_id(&signer.verifying_key())),
            hex::encode(signature.to_bytes()).into_bytes(),
        );
        assert!(refusal(&files, &signer).starts_with("manifest.json: the signature by key"));
    }

    #[test]
    fn a_history_line_of_a_job_outside_the_bundle_is_refused() {
        let signer = key(1);
        let mut jobs = ChainedFile::default();
        jobs.push(&json!({"job_id": 1})).unwrap();
        let mut history = ChainedFile::default();
        history.push(&json!({"job_id": 9})).unwrap();
        let files = sealed(
            vec![("jobs.jsonl", jobs), ("history.jsonl", history)],
            &signer,
        );
        assert_eq!(
            refusal(&files, &signer),
            "history.jsonl line 1: names job 9 that is not in jobs.jsonl"
        );
    }

    #[test]
    fn only_a_bundles_own_names_are_allowed() {
        for good in [
            "jobs.jsonl",
            "manifest.json",
            "signatures/0123456789abcdef.sig",
        ] {
            assert!(allowed_name(good), "{good}");
        }
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "signatures/../../x.sig",
            "signatures/0123456789abcdeg.sig",
            "C:x",
            "jobs.jsonl/",
            "notes.txt",
        ] {
            assert!(!allowed_name(bad), "{bad}");
        }
    }

    #[test]
    fn keys_read_back_from_their_hex_lines() {
        let signer = generate().unwrap();
        let text = hex_line(&signer.to_bytes());
        assert_eq!(signing_key(&text).unwrap().to_bytes(), signer.to_bytes());
        let public = hex_line(signer.verifying_key().as_bytes());
        assert_eq!(verifying_key(&public).unwrap(), signer.verifying_key());
        assert!(signing_key("zz").is_none());
        assert!(verifying_key(&"00".repeat(31)).is_none());
    }
}
