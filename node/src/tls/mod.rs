//! TLS: the cluster's certificates (`rota cert`), whom a certificate names, and the TLS
//! settings of a node's listeners and of the connections it dials. See docs/security.md.

pub mod identity;
pub mod issue;

pub use identity::{identity_of, Identity, IdentityError};
pub use issue::{Authority, CertError, Issued};

use rota_raft::NodeId;
use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, ClientTlsConfig, Identity as TlsIdentity, ServerTlsConfig};
use tonic::{Request, Status};

/// Why a node's TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file holds no PEM certificate.
    #[error("{}: no PEM certificate in it", .0.display())]
    NoCertificate(PathBuf),
    /// The certificate does not name a node.
    #[error("{}: {why}", path.display())]
    NotANode { path: PathBuf, why: String },
    /// rustls refused the certificates or key for the HTTP listener.
    #[error("the HTTP listener's TLS: {0}")]
    Http(String),
}

/// What a node presents and trusts: the cluster CA's certificate, and its own certificate
/// (which names its id) with its key.
#[derive(Clone)]
pub struct NodeTls {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
    id: NodeId,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The DER of the first certificate in the PEM text `pem`.
fn first_der(pem: &[u8]) -> Option<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem)
        .filter_map(Result::ok)
        .find(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
}

impl NodeTls {
    /// Reads the CA certificate, the node's certificate and its key from PEM files; the
    /// certificate must name a node (`rota cert create-node`).
    pub fn read(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let (ca_pem, cert_pem, key_pem) = (read(ca)?, read(cert)?, read(key)?);
        if first_der(&ca_pem).is_none() {
            return Err(TlsError::NoCertificate(ca.to_owned()));
        }
        let der = first_der(&cert_pem).ok_or_else(|| TlsError::NoCertificate(cert.to_owned()))?;
        let id = match identity_of(&der) {
            Ok(Identity::Node(id)) => id,
            Ok(other) => {
                return Err(TlsError::NotANode {
                    path: cert.to_owned(),
                    why: format!(
                        "it names {other}, not a node: make one with `rota cert create-node`"
                    ),
                })
            }
            Err(e) => {
                return Err(TlsError::NotANode {
                    path: cert.to_owned(),
                    why: e.to_string(),
                })
            }
        };
        Ok(Self {
            ca: ca_pem,
            cert: cert_pem,
            key: key_pem,
            id,
        })
    }

    /// The node id the certificate names.
    pub fn id(&self) -> NodeId {
        self.id
    }

    fn identity(&self) -> TlsIdentity {
        TlsIdentity::from_pem(&self.cert, &self.key)
    }

    fn ca(&self) -> Certificate {
        Certificate::from_pem(&self.ca)
    }

    /// The peer listener's settings: a caller must present a certificate the CA signed.
    pub fn peer_server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(self.ca())
    }

    /// The client listener's settings: a certificate the CA signed is taken as the
    /// caller's identity; a caller without one must bring a token.
    pub fn client_server(&self) -> ServerTlsConfig {
        self.peer_server().client_auth_optional(true)
    }

    /// The HTTP listener's settings, as the client port's (a certificate the CA signed is
    /// the caller's identity; without one, a token), offering HTTP/2 and HTTP/1.1.
    pub fn http_server(&self) -> Result<std::sync::Arc<rustls::ServerConfig>, TlsError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |e: &dyn std::fmt::Display| TlsError::Http(e.to_string());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.ca) {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots))
            .allow_unauthenticated()
            .build()
            .map_err(|e| bad(&e))?;
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&e))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| bad(&e))?;
        let mut config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| bad(&e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(std::sync::Arc::new(config))
    }

    /// Dialling a peer or the leader: this node's certificate, trusting the CA only.
    pub fn dialer(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca())
            .identity(self.identity())
    }
}

/// Makes ring rustls's process-wide provider, once. tonic's server side asks rustls for the
/// process default, which rustls cannot choose by itself if more than one is compiled in.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whom the caller's TLS certificate names, if it presented one the CA signed.
pub fn caller<T>(request: &Request<T>) -> Result<Option<Identity>, Status> {
    let Some(certs) = request.peer_certs() else {
        return Ok(None);
    };
    let Some(leaf) = certs.first() else {
        return Ok(None);
    };
    identity_of(leaf.as_ref())
        .map(Some)
        .map_err(|e| Status::unauthenticated(format!("the client certificate: {e}")))
}
