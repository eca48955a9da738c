//! Who may do what: the scopes a principal holds, and the cluster's bearer tokens. A token's
//! secret never enters the log: the node that creates one draws it and proposes only its
//! SHA-256, so every replica can check a presented token locally and a revocation holds on
//! each from the moment it applies it.

use crate::command::{Reply, Response};
use crate::error::SchedulerError;
use crate::governance::{GovernanceChange, Stamp};
use crate::ids::TenantId;
use crate::ledger::{At, State};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Most tokens a cluster holds at once (revoked ones are gone; expired ones count until
/// revoked).
pub const MAX_TOKENS: usize = 1_000;
/// Longest a token's name may be.
pub const MAX_TOKEN_NAME_LEN: usize = 64;
/// Most tenants one token may be bound to.
pub const MAX_TOKEN_TENANTS: usize = 64;

/// A right over part of the API, as the seed names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AuthScope {
    /// `orchestrator:read`: get and list jobs and plans, dead letters, governance, status.
    Read,
    /// `orchestrator:write`: enqueue, submit plans, cancel, replay.
    Write,
    /// `orchestrator:lease`: lease, heartbeat, complete.
    Lease,
    /// `orch:quota`: quotas, throttles, pausing and resuming sources.
    Quota,
    /// `orch:backfill`: enqueue work marked as a backfill.
    Backfill,
    /// `orch:admin`: maintenance, breakers, retention, membership, tokens.
    Admin,
}

impl AuthScope {
    /// Every scope, in order.
    pub const ALL: [AuthScope; 6] = [
        AuthScope::Read,
        AuthScope::Write,
        AuthScope::Lease,
        AuthScope::Quota,
        AuthScope::Backfill,
        AuthScope::Admin,
    ];

    /// The scope's name on the wire and in the CLI.
    pub fn name(self) -> &'static str {
        match self {
            AuthScope::Read => "orchestrator:read",
            AuthScope::Write => "orchestrator:write",
            AuthScope::Lease => "orchestrator:lease",
            AuthScope::Quota => "orch:quota",
            AuthScope::Backfill => "orch:backfill",
            AuthScope::Admin => "orch:admin",
        }
    }

    /// The scopes a name stands for: one scope, `orchestrator:*` (read, write and lease,
    /// the seed's producer-and-worker grant) or `*` (every scope).
    pub fn parse(name: &str) -> Result<Vec<AuthScope>, SchedulerError> {
        match name {
            "*" => Ok(AuthScope::ALL.to_vec()),
            "orchestrator:*" => Ok(vec![AuthScope::Read, AuthScope::Write, AuthScope::Lease]),
            _ => AuthScope::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .map(|s| vec![s])
                .ok_or_else(|| {
                    SchedulerError::invalid(
                        "scopes",
                        format!(
                            "unknown scope {name:?}; the scopes are {}, orchestrator:* and *",
                            AuthScope::ALL.map(AuthScope::name).join(", ")
                        ),
                    )
                }),
        }
    }

    /// Every scope the names stand for.
    pub fn parse_all<S: AsRef<str>>(names: &[S]) -> Result<BTreeSet<AuthScope>, SchedulerError> {
        let mut scopes = BTreeSet::new();
        for name in names {
            scopes.extend(AuthScope::parse(name.as_ref().trim())?);
        }
        Ok(scopes)
    }
}

impl std::fmt::Display for AuthScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A bearer token as the cluster keeps it: never the secret, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Unique among the cluster's tokens; what `list` shows and `revoke` takes.
    pub name: String,
    /// SHA-256 of the secret.
    pub hash: [u8; 32],
    /// What it may do.
    pub scopes: BTreeSet<AuthScope>,
    /// The tenants it is bound to; empty: every tenant.
    pub tenants: BTreeSet<TenantId>,
    /// Log time it was created at.
    pub created_ms: u64,
    /// Log time it stops being accepted at, if ever.
    pub expires_ms: Option<u64>,
    /// The principal that created it.
    pub created_by: String,
}

/// A token as `CreateToken` proposes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSpec {
    /// Its name.
    pub name: String,
    /// SHA-256 of the secret the proposing node drew.
    pub hash: [u8; 32],
    /// What it may do; at least one scope.
    pub scopes: BTreeSet<AuthScope>,
    /// The tenants it is bound to; empty: every tenant.
    pub tenants: BTreeSet<TenantId>,
    /// How long it lives, in log time; `None`: until revoked.
    pub ttl_ms: Option<u64>,
}

/// The replicated part of access control (encoded after the ledger in a snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Access {
    /// Tokens by name.
    pub tokens: BTreeMap<String, Token>,
    /// Whether the one bootstrap token was ever created; a second bootstrap is refused.
    pub bootstrapped: bool,
}

/// A principal's name (a token's, a client certificate's): 1 to 64 ASCII letters, digits,
/// `-`, `_`, `.` or `@`.
pub fn valid_principal_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOKEN_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

/// A token's name, as `valid_principal_name` has it.
pub(crate) fn check_token_name(name: &str) -> Result<(), SchedulerError> {
    if valid_principal_name(name) {
        Ok(())
    } else {
        Err(SchedulerError::invalid(
            "name",
            format!("a token's name is 1 to {MAX_TOKEN_NAME_LEN} ASCII letters, digits, '-', '_', '.' or '@'"),
        ))
    }
}

/// The tenants a principal is bound to: at least one, at most `MAX_TOKEN_TENANTS`, each a
/// name a job can carry (one bound to any other could never lease anything).
pub(crate) fn check_tenants(tenants: &BTreeSet<TenantId>) -> Result<(), SchedulerError> {
    if tenants.is_empty() || tenants.len() > MAX_TOKEN_TENANTS {
        return Err(SchedulerError::invalid(
            "tenants",
            format!("a principal is bound to between 1 and {MAX_TOKEN_TENANTS} tenants"),
        ));
    }
    for tenant in tenants {
        crate::submit::check_name("tenants", &tenant.0)?;
    }
    Ok(())
}

impl TokenSpec {
    /// What `apply` would refuse whatever the state: a bad name, no scope, too many
    /// tenants, an empty tenant, a zero lifetime.
    pub fn check(&self) -> Result<(), SchedulerError> {
        check_token_name(&self.name)?;
        if self.scopes.is_empty() {
            return Err(SchedulerError::invalid(
                "scopes",
                "a token needs at least one scope",
            ));
        }
        if !self.tenants.is_empty() {
            check_tenants(&self.tenants)?;
        }
        if self.ttl_ms == Some(0) {
            return Err(SchedulerError::invalid("ttl", "must be longer than zero"));
        }
        Ok(())
    }
}

impl State {
    /// Adds a token. A bootstrap token is refused once any bootstrap happened.
    pub(crate) fn create_token(
        &mut self,
        spec: TokenSpec,
        bootstrap: bool,
        stamp: Stamp,
        at: At,
    ) -> Response {
        spec.check()?;
        let access = &self.ledger.access;
        if bootstrap && access.bootstrapped {
            return Err(SchedulerError::AlreadyBootstrapped);
        }
        if access.tokens.contains_key(&spec.name) {
            return Err(SchedulerError::TokenExists(spec.name));
        }
        if access.tokens.len() >= MAX_TOKENS {
            return Err(SchedulerError::TooManyTokens(MAX_TOKENS));
        }
        if access.tokens.values().any(|t| t.hash == spec.hash) {
            // A fresh 256-bit secret never collides: this is a replayed proposal.
            return Err(SchedulerError::invalid(
                "hash",
                "another token has this secret",
            ));
        }
        let token = Token {
            name: spec.name.clone(),
            hash: spec.hash,
            scopes: spec.scopes.clone(),
            tenants: spec.tenants.clone(),
            created_ms: at.now_ms,
            expires_ms: spec.ttl_ms.map(|ttl| at.now_ms.saturating_add(ttl)),
            created_by: stamp.actor.clone(),
        };
        let change = GovernanceChange::TokenCreated {
            name: spec.name.clone(),
            scopes: spec.scopes.iter().map(|s| s.name().to_owned()).collect(),
            tenants: spec.tenants.iter().cloned().collect(),
            expires_ms: token.expires_ms,
        };
        self.idx
            .token_by_hash
            .insert(token.hash, token.name.clone());
        let access = &mut self.ledger.access;
        access.tokens.insert(spec.name, token);
        access.bootstrapped |= bootstrap;
        self.govern(Some(stamp), change, at);
        Ok(Reply::Done)
    }

    /// Removes a token: from this apply on, it is refused.
    pub(crate) fn revoke_token(&mut self, name: String, stamp: Stamp, at: At) -> Response {
        let Some(token) = self.ledger.access.tokens.remove(&name) else {
            return Err(SchedulerError::TokenNotFound(name));
        };
        self.idx.token_by_hash.remove(&token.hash);
        self.govern(Some(stamp), GovernanceChange::TokenRevoked { name }, at);
        Ok(Reply::Done)
    }

    /// The token whose secret hashes to `hash`, if the cluster holds one.
    pub fn token_by_hash(&self, hash: &[u8; 32]) -> Option<&Token> {
        let name = self.idx.token_by_hash.get(hash)?;
        self.ledger.access.tokens.get(name)
    }

    /// The cluster's tokens, by name.
    pub fn tokens(&self) -> impl Iterator<Item = &Token> {
        self.ledger.access.tokens.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;

    fn spec(name: &str, hash: u8) -> TokenSpec {
        TokenSpec {
            name: name.to_owned(),
            hash: [hash; 32],
            scopes: [AuthScope::Read].into(),
            tenants: BTreeSet::new(),
            ttl_ms: Some(60_000),
        }
    }

    fn create(state: &mut State, spec: TokenSpec, bootstrap: bool, index: u64) -> Response {
        state.apply(
            Command::CreateToken {
                spec,
                bootstrap,
                stamp: Stamp::new("ops", "a test"),
            },
            1_000,
            index,
        )
    }

    #[test]
    fn scopes_parse_by_name_and_by_group() {
        assert_eq!(
            AuthScope::parse_all(&["orchestrator:*"]).unwrap(),
            [AuthScope::Read, AuthScope::Write, AuthScope::Lease].into()
        );
        assert_eq!(AuthScope::parse_all(&["*"]).unwrap().len(), 6);
        for scope in AuthScope::ALL {
            assert_eq!(AuthScope::parse(scope.name()).unwrap(), vec![scope]);
        }
        let err = AuthScope::parse("orch:everything").unwrap_err();
        assert!(err.to_string().contains("orch:everything"), "{err}");
    }

    #[test]
    fn a_token_is_found_by_its_hash_until_revoked() {
        let mut state = State::new();
        create(&mut state, spec("ci", 7), false, 1).unwrap();
        let token = state.token_by_hash(&[7; 32]).expect("created");
        assert_eq!(token.name, "ci");
        assert_eq!(token.created_by, "ops");
        assert_eq!(token.expires_ms, Some(61_000));
        assert!(state.token_by_hash(&[8; 32]).is_none());
        state
            .apply(
                Command::RevokeToken {
                    name: "ci".to_owned(),
                    stamp: Stamp::new("ops", "leaked"),
                },
                2_000,
                2,
            )
            .unwrap();
        assert!(state.token_by_hash(&[7; 32]).is_none());
        assert_eq!(state.tokens().count(), 0);
    }

    #[test]
    fn names_are_unique_and_bootstrap_happens_once() {
        let mut state = State::new();
        create(&mut state, spec("root", 1), true, 1).unwrap();
        assert!(state.ledger.access.bootstrapped);
        assert_eq!(
            create(&mut state, spec("root2", 2), true, 2),
            Err(SchedulerError::AlreadyBootstrapped)
        );
        assert_eq!(
            create(&mut state, spec("root", 3), false, 3),
            Err(SchedulerError::TokenExists("root".to_owned()))
        );
        let err = create(&mut state, spec("bad name", 4), false, 4).unwrap_err();
        assert!(matches!(err, SchedulerError::InvalidInput { .. }), "{err}");
        assert_eq!(
            state.apply(
                Command::RevokeToken {
                    name: "nobody".to_owned(),
                    stamp: Stamp::new("ops", "x"),
                },
                2_000,
                5,
            ),
            Err(SchedulerError::TokenNotFound("nobody".to_owned()))
        );
        // Refusals changed nothing; revoking the bootstrap token does not allow another.
        assert_eq!(state.tokens().count(), 1);
    }

    #[test]
    fn tokens_survive_a_snapshot() {
        let mut state = State::new();
        create(&mut state, spec("ci", 9), true, 1).unwrap();
        let restored = State::restore(&state.snapshot().unwrap()).unwrap();
        assert_eq!(restored.digest().unwrap(), state.digest().unwrap());
        assert_eq!(
            restored.token_by_hash(&[9; 32]).map(|t| t.name.as_str()),
            Some("ci")
        );
        assert!(restored.ledger.access.bootstrapped);
    }
}
