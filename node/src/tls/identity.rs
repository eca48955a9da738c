//! Who a certificate names. rota's certificates carry one URI in their subject alternative
//! names: `rota://node/ID` for a cluster node, `rota://client/NAME` for a client principal.
//! A certificate the cluster's CA signed without such a name is nobody to rota.

use rota_raft::NodeId;

/// The URI prefix of a node certificate's name.
pub const NODE_URI: &str = "rota://node/";
/// The URI prefix of a client certificate's name.
pub const CLIENT_URI: &str = "rota://client/";

/// The principal a certificate names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A cluster node, by id: may make Raft calls and forward clients' calls.
    Node(NodeId),
    /// A client principal, by name.
    Client(String),
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Node(id) => write!(f, "node {id}"),
            Identity::Client(name) => write!(f, "client {name:?}"),
        }
    }
}

/// Why a certificate names nobody rota knows.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// Not a DER X.509 certificate.
    #[error("not an X.509 certificate: {0}")]
    Unparsable(String),
    /// No `rota://node/ID` or `rota://client/NAME` name.
    #[error("the certificate names no rota node or client (a URI name {NODE_URI}ID or {CLIENT_URI}NAME)")]
    Unnamed,
    /// More than one rota name: which one it is cannot be told.
    #[error("the certificate names more than one rota node or client")]
    Ambiguous,
    /// A rota name that does not parse.
    #[error("the certificate's rota name {0:?} is not a node id or a client name")]
    BadName(String),
}

/// Whom the DER certificate `der` names.
pub fn identity_of(der: &[u8]) -> Result<Identity, IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let names = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let mut found = None;
    for name in names.iter().flat_map(|ext| ext.value.general_names.iter()) {
        let x509_parser::extensions::GeneralName::URI(uri) = name else {
            continue;
        };
        let identity = if let Some(id) = uri.strip_prefix(NODE_URI) {
            Identity::Node(
                id.parse()
                    .map_err(|_| IdentityError::BadName((*uri).to_owned()))?,
            )
        } else if let Some(name) = uri.strip_prefix(CLIENT_URI) {
            if !valid_client_name(name) {
                return Err(IdentityError::BadName((*uri).to_owned()));
            }
            Identity::Client(name.to_owned())
        } else {
            continue;
        };
        if found.replace(identity).is_some() {
            return Err(IdentityError::Ambiguous);
        }
    }
    found.ok_or(IdentityError::Unnamed)
}

/// A client principal's name: 1 to 64 ASCII letters, digits, `-`, `_`, `.` or `@`, as a
/// token's (`rota_state_machine::valid_principal_name`).
pub fn valid_client_name(name: &str) -> bool {
    rota_state_machine::valid_principal_name(name)
}
