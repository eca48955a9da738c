//! Making the cluster's certificates (`rota cert`): a CA, node certificates that name a
//! node id and the hosts it is reached at, client certificates that name a principal.
//! Keys are ECDSA P-256; every file is written readable by its owner only.

use super::identity::{valid_client_name, CLIENT_URI, NODE_URI};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rota_raft::NodeId;
use std::io::Write;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// How long a CA is valid unless told: ten years.
pub const CA_VALID_DAYS: u32 = 3650;
/// How long a node or client certificate is valid unless told: two years.
pub const LEAF_VALID_DAYS: u32 = 730;

/// Why a certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters or a key.
    #[error("{what}: {source}")]
    Make {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists already; certificates and keys are never overwritten.
    #[error("{} exists already: remove it first if you mean to replace it", .0.display())]
    Exists(PathBuf),
    /// A name or host rota cannot put in a certificate.
    #[error("{0}")]
    Invalid(String),
}

/// A certificate and its private key, in PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs and panics.
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// The cluster's certificate authority: what signs node and client certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
}

fn make(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CertError {
    let what = what.into();
    move |source| CertError::Make { what, source }
}

fn validity(params: &mut CertificateParams, days: u32) -> Result<(), CertError> {
    if days == 0 {
        return Err(CertError::Invalid(
            "--days must be at least 1: a certificate valid for no day is expired at once"
                .to_owned(),
        ));
    }
    let now = OffsetDateTime::now_utc();
    // An hour back: a peer whose clock runs a little behind still accepts it at once.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
    Ok(())
}

/// A host a node certificate may name: an IP address, or a DNS name (letters, digits, `-`,
/// `.`, a leading `*.` for a wildcard). A port or a scheme is a mistake worth naming.
fn check_host(host: &str) -> Result<(), CertError> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if valid {
        Ok(())
    } else {
        Err(CertError::Invalid(format!(
            "host {host:?}: give a DNS name or an IP address, without a port or scheme"
        )))
    }
}

impl Authority {
    /// A new CA named `name`, valid for `days`; returns it with its certificate and key.
    pub fn create(name: &str, days: u32) -> Result<(Self, Issued), CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(make("CA"))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, days)?;
        let key = KeyPair::generate().map_err(make("CA key"))?;
        let cert = params.self_signed(&key).map_err(make("CA certificate"))?;
        let issued = Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        let issuer = Issuer::new(params, key);
        Ok((Self { issuer }, issued))
    }

    /// The CA whose certificate and key are these PEM texts.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem).map_err(make("the CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(make("the CA certificate"))?;
        Ok(Self { issuer })
    }

    /// Reads the CA from `dir`'s `ca.crt` and `ca.key`.
    pub fn read(dir: &Path) -> Result<Self, CertError> {
        let cert = read_text(&dir.join(CA_CERT))?;
        let key = read_text(&dir.join(CA_KEY))?;
        Self::load(&cert, &key)
    }

    /// A certificate for node `id`, reached at `hosts` (DNS names or IP addresses), good
    /// for both ends of a TLS connection (a node serves and dials its peers).
    pub fn node(&self, id: NodeId, hosts: &[String], days: u32) -> Result<Issued, CertError> {
        if hosts.is_empty() {
            return Err(CertError::Invalid(
                "a node certificate needs at least one --host (the names or addresses peers and clients dial)".to_owned(),
            ));
        }
        for host in hosts {
            check_host(host)?;
        }
        let mut params =
            CertificateParams::new(hosts.to_vec()).map_err(make("the node's hosts"))?;
        params
            .subject_alt_names
            .push(uri(&format!("{NODE_URI}{id}"))?);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("rota node {id}"));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params, days, "node certificate")
    }

    /// A certificate for the client principal `name`.
    pub fn client(&self, name: &str, days: u32) -> Result<Issued, CertError> {
        // No scope: the certificate authenticates `name` and allows nothing.
        self.client_with(name, &[], &[], days)
    }

    /// A client certificate for `name` that holds `scopes` (none given: none) and reaches `tenants`' jobs only (none given: every tenant's), written in it as
    /// `rota://scope/…` and `rota://tenant/…` names. A certificate cannot be revoked
    /// before it expires: give narrow ones short lives (`days`), or use tokens.
    pub fn client_with(
        &self,
        name: &str,
        scopes: &[rota_state_machine::AuthScope],
        tenants: &[String],
        days: u32,
    ) -> Result<Issued, CertError> {
        if !valid_client_name(name) {
            return Err(CertError::Invalid(format!(
                "client name {name:?}: use 1 to 64 letters, digits, '-', '_', '.' or '@'"
            )));
        }
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(make("client"))?;
        params
            .subject_alt_names
            .push(uri(&format!("{CLIENT_URI}{name}"))?);
        for scope in scopes {
            params.subject_alt_names.push(uri(&format!(
                "{}{}",
                crate::auth::SCOPE_URI,
                scope.name()
            ))?);
        }
        if tenants.len() > rota_state_machine::MAX_TOKEN_TENANTS {
            return Err(CertError::Invalid(format!(
                "{} tenants: a principal is bound to at most {}",
                tenants.len(),
                rota_state_machine::MAX_TOKEN_TENANTS
            )));
        }
        for tenant in tenants {
            if !valid_client_name(tenant) {
                return Err(CertError::Invalid(format!(
                    "tenant {tenant:?}: a certificate names tenants of 1 to 64 letters, digits, '-', '_', '.' or '@' (use a token for others)"
                )));
            }
            params
                .subject_alt_names
                .push(uri(&format!("{}{tenant}", crate::auth::TENANT_URI))?);
        }
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, days, "client certificate")
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        days: u32,
        what: &str,
    ) -> Result<Issued, CertError> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days)?;
        let key = KeyPair::generate().map_err(make(format!("{what} key")))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(make(what.to_owned()))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn uri(text: &str) -> Result<SanType, CertError> {
    let name = text
        .try_into()
        .map_err(|e| CertError::Invalid(format!("{text:?}: {e}")))?;
    Ok(SanType::URI(name))
}

/// The CA certificate's file name in a certificate directory.
pub const CA_CERT: &str = "ca.crt";
/// The CA key's file name in a certificate directory.
pub const CA_KEY: &str = "ca.key";

/// The file names of node `id`'s certificate and key.
pub fn node_files(id: NodeId) -> (String, String) {
    (format!("node.{id}.crt"), format!("node.{id}.key"))
}

/// The file names of client `name`'s certificate and key.
pub fn client_files(name: &str) -> (String, String) {
    (format!("client.{name}.crt"), format!("client.{name}.key"))
}

fn read_text(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::File {
        path: path.to_owned(),
        source,
    })
}

/// Writes `issued` as `dir/cert` and `dir/key`, readable and writable by the owner only;
/// refuses if either exists. Returns the two paths.
pub fn write_pair(
    dir: &Path,
    (cert, key): (String, String),
    issued: &Issued,
) -> Result<(PathBuf, PathBuf), CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::File {
        path: dir.to_owned(),
        source,
    })?;
    let (cert, key) = (dir.join(cert), dir.join(key));
    for path in [&cert, &key] {
        if path.exists() {
            return Err(CertError::Exists(path.clone()));
        }
    }
    write_private(&key, &issued.key_pem)?;
    if let Err(e) = write_private(&cert, &issued.cert_pem) {
        // No key left behind without its certificate: it would block the next try.
        let _ = std::fs::remove_file(&key);
        return Err(e);
    }
    Ok((cert, key))
}

fn write_private(path: &Path, text: &str) -> Result<(), CertError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let failed = |source| CertError::File {
        path: path.to_owned(),
        source,
    };
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CertError::Exists(path.to_owned())
        } else {
            failed(e)
        }
    })?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)
}
