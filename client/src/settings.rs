//! Where a client finds its cluster and its credentials: the `ROTA_*` environment, a client
//! config file, or (in the CLI) flags, each layer filling what the one above left unset.
//!
//! The file is TOML, `$ROTA_CLIENT_CONFIG` or else `$XDG_CONFIG_HOME/rota/client.toml`
//! (`~/.config/rota/client.toml`) when it exists:
//!
//! ```toml
//! endpoints = ["10.0.0.1:7070", "10.0.0.2:7070", "10.0.0.3:7070"]
//! tls_ca = "ca.crt"              # relative paths are relative to the file
//! tls_cert = "client.ops.crt"    # a client certificate and its key, or
//! tls_key = "client.ops.key"
//! token_file = "token"           # a file holding a token (or `token = "rota_…"`)
//! ```
//!
//! A file or token file that holds a token must not be readable by group or others.

use crate::{tls_from_files, ClientConfig, ClientError};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The endpoint a client reaches when nothing names one: `rota dev`'s and `rota agent`'s
/// default listen address.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:7070";

/// The variable that names the client config file.
pub const CONFIG_VAR: &str = "ROTA_CLIENT_CONFIG";

/// One layer of client settings; unset fields are filled by a lower layer (`or`).
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    /// `host:port` of the nodes; any one is enough.
    pub endpoints: Option<Vec<String>>,
    /// The cluster CA's certificate (PEM): TLS to the nodes, trusting it.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) to authenticate with; needs `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM); needs `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// A bearer token. Wins over `token_file`.
    pub token: Option<String>,
    /// A file whose first line is a bearer token.
    pub token_file: Option<PathBuf>,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("ClientSettings")
            .field("endpoints", &self.endpoints)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("token", &self.token.as_ref().map(|_| "<secret>"))
            .field("token_file", &self.token_file)
            .finish()
    }
}

impl ClientSettings {
    /// The `ROTA_*` variables: `ROTA_ENDPOINTS` (comma-separated), `ROTA_TLS_CA`,
    /// `ROTA_TLS_CERT`, `ROTA_TLS_KEY`, `ROTA_TOKEN`, `ROTA_TOKEN_FILE`. Empty ones count as
    /// unset.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let path = |name: &str| var(name).map(PathBuf::from);
        Self {
            endpoints: var("ROTA_ENDPOINTS").map(|e| split_endpoints(&e)),
            tls_ca: path("ROTA_TLS_CA"),
            tls_cert: path("ROTA_TLS_CERT"),
            tls_key: path("ROTA_TLS_KEY"),
            token: var("ROTA_TOKEN"),
            token_file: path("ROTA_TOKEN_FILE"),
        }
    }

    /// The config file `path`, with its relative paths made relative to its directory.
    /// Refused when it holds a token and others may read it.
    pub fn from_file(path: &Path) -> Result<Self, ClientError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ClientError::Config(format!("reading client config {}: {e}", path.display()))
        })?;
        let mut settings: Self = toml::from_str(&text)
            .map_err(|e| ClientError::Config(format!("client config {}: {e}", path.display())))?;
        if settings.token.is_some() {
            owner_only(path)?;
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        for field in [
            &mut settings.tls_ca,
            &mut settings.tls_cert,
            &mut settings.tls_key,
            &mut settings.token_file,
        ] {
            if let Some(p) = field.as_mut() {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
        }
        Ok(settings)
    }

    /// The config file to read: the one `$ROTA_CLIENT_CONFIG` names (which must exist),
    /// else `$XDG_CONFIG_HOME/rota/client.toml` or `~/.config/rota/client.toml` if there is
    /// one; none otherwise.
    pub fn default_file() -> Option<PathBuf> {
        if let Some(named) = std::env::var_os(CONFIG_VAR).filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(named));
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(base.join("rota/client.toml")).filter(|p| p.exists())
    }

    /// The settings of `file` when there is one, else none (all unset).
    pub fn from_optional_file(file: Option<&Path>) -> Result<Self, ClientError> {
        file.map_or_else(|| Ok(Self::default()), Self::from_file)
    }

    /// These settings, with what they leave unset taken from `lower`. A certificate and
    /// its key go together, and so do a token and a token file: a layer that sets either
    /// one of a pair sets the pair.
    pub fn or(self, lower: Self) -> Self {
        let (tls_cert, tls_key) = if self.tls_cert.is_some() || self.tls_key.is_some() {
            (self.tls_cert, self.tls_key)
        } else {
            (lower.tls_cert, lower.tls_key)
        };
        let (token, token_file) = if self.token.is_some() || self.token_file.is_some() {
            (self.token, self.token_file)
        } else {
            (lower.token, lower.token_file)
        };
        Self {
            endpoints: self.endpoints.or(lower.endpoints),
            tls_ca: self.tls_ca.or(lower.tls_ca),
            tls_cert,
            tls_key,
            token,
            token_file,
        }
    }

    /// A client configuration of these settings, with `127.0.0.1:7070` when no endpoint is
    /// named and the crate's default timeouts. Reads the TLS files and the token file.
    pub fn into_config(self) -> Result<ClientConfig, ClientError> {
        let endpoints = self
            .endpoints
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| vec![DEFAULT_ENDPOINT.to_owned()]);
        let mut config = ClientConfig::new(endpoints);
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ClientError::Config(
                    "a client certificate (--tls-cert, ROTA_TLS_CERT, tls_cert) is given without its key (tls_key)".to_owned(),
                ))
            }
            (None, Some(_)) => {
                return Err(ClientError::Config(
                    "a client key (--tls-key, ROTA_TLS_KEY, tls_key) is given without its certificate (tls_cert)".to_owned(),
                ))
            }
        };
        config.tls = match (&self.tls_ca, identity) {
            (Some(ca), identity) => Some(tls_from_files(ca, identity)?),
            (None, None) => None,
            (None, Some(_)) => {
                return Err(ClientError::Config(
                    "a client certificate needs the CA the nodes' certificates are signed by (--tls-ca, ROTA_TLS_CA, tls_ca)".to_owned(),
                ))
            }
        };
        config.token = match (self.token, self.token_file) {
            (Some(token), _) => Some(token),
            (None, Some(file)) => Some(read_token(&file)?),
            (None, None) => None,
        };
        Ok(config)
    }
}

/// Endpoints from a comma-separated list, blanks dropped.
fn split_endpoints(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The token in the first line of `file`, which only its owner may read.
fn read_token(file: &Path) -> Result<String, ClientError> {
    owner_only(file)?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| ClientError::Config(format!("reading token file {}: {e}", file.display())))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(ClientError::Config(format!(
            "token file {} is empty",
            file.display()
        )));
    }
    Ok(token.to_owned())
}

/// Refuses a file that holds a secret and that group or others may read, as ssh does.
#[cfg(unix)]
fn owner_only(path: &Path) -> Result<(), ClientError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(ClientError::Config(format!(
            "{} holds a token but others may read it (mode {:o}): chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn owner_only(_path: &Path) -> Result<(), ClientError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_file_fills_what_flags_and_environment_leave_unset() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "client.toml",
            "endpoints = [\"10.0.0.1:7070\", \"10.0.0.2:7070\"]\ntls_ca = \"ca.crt\"\ntoken = \"rota_file\"\n",
            0o600,
        );
        let from_file = ClientSettings::from_file(&file).unwrap();
        assert_eq!(from_file.tls_ca, Some(dir.path().join("ca.crt")));
        let flags = ClientSettings {
            token: Some("rota_flag".to_owned()),
            ..ClientSettings::default()
        };
        let merged = flags.or(from_file);
        assert_eq!(
            merged.endpoints,
            Some(vec!["10.0.0.1:7070".to_owned(), "10.0.0.2:7070".to_owned()])
        );
        assert_eq!(merged.token.as_deref(), Some("rota_flag"));
        assert_eq!(merged.tls_ca, Some(dir.path().join("ca.crt")));
    }

    #[test]
    fn a_certificate_and_its_key_come_from_one_layer_and_so_do_tokens() {
        let upper = ClientSettings {
            tls_cert: Some("mine.crt".into()),
            ..ClientSettings::default()
        };
        let lower = ClientSettings {
            tls_ca: Some("ca.crt".into()),
            tls_cert: Some("c.crt".into()),
            tls_key: Some("c.key".into()),
            token_file: Some("token".into()),
            ..ClientSettings::default()
        };
        let merged = upper.or(lower.clone());
        assert_eq!(merged.tls_ca, Some("ca.crt".into()));
        assert_eq!(
            (merged.tls_cert, merged.tls_key),
            (Some("mine.crt".into()), None),
            "a certificate is never paired with another layer's key"
        );
        assert_eq!(merged.token_file, Some("token".into()));
        let token = ClientSettings {
            token: Some("rota_x".to_owned()),
            ..ClientSettings::default()
        };
        assert_eq!(token.or(lower).token_file, None);
    }

    #[test]
    fn secrets_that_others_may_read_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = write(dir.path(), "open.toml", "token = \"rota_x\"\n", 0o644);
        let err = ClientSettings::from_file(&open).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        let token = write(dir.path(), "token", "rota_y\n", 0o640);
        let settings = ClientSettings {
            token_file: Some(token.clone()),
            ..ClientSettings::default()
        };
        assert!(settings.clone().into_config().is_err());
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = settings.into_config().unwrap();
        assert_eq!(config.token.as_deref(), Some("rota_y"));
        assert_eq!(config.endpoints, vec![DEFAULT_ENDPOINT.to_owned()]);
    }

    #[test]
    fn bad_files_and_half_pairs_are_refused_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let unknown = write(dir.path(), "a.toml", "endpoint = \"x:1\"\n", 0o600);
        let err = ClientSettings::from_file(&unknown).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
        let missing = ClientSettings::from_file(&dir.path().join("none.toml")).unwrap_err();
        assert!(missing.to_string().contains("none.toml"), "{missing}");
        let half = ClientSettings {
            tls_ca: Some(dir.path().join("ca.crt")),
            tls_cert: Some(dir.path().join("c.crt")),
            ..ClientSettings::default()
        };
        let err = half.into_config().unwrap_err().to_string();
        assert!(err.contains("without its key"), "{err}");
        let empty = write(dir.path(), "empty-token", "\n", 0o600);
        let err = ClientSettings {
            token_file: Some(empty),
            ..ClientSettings::default()
        }
        .into_config()
        .unwrap_err()
        .to_string();
        assert!(err.contains("is empty"), "{err}");
    }
}
