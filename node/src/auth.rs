//! Who is calling, and what they may do. With auth on (a node with TLS), every call to the
//! public services carries a principal: a bearer token (`authorization: Bearer rota_…`,
//! checked against the hashes in the replicated state) or a client certificate of the
//! cluster's CA (its scopes and tenants written in it by `rota cert create-client`). Each RPC
//! needs one scope (`needed`, a table a test walks against the service descriptors); a
//! principal bound to tenants reaches only their jobs (`Principal::tenants`, enforced where
//! the call is served). A follower that forwards a call sends its principal along, on the
//! peer port only, where the sender is a node of the cluster; the leader checks a
//! forwarded token again against its own state, so a revocation holds there from its commit.
//! With auth off (`--insecure`, `rota dev`), every caller holds every scope, as before.

use crate::clock::LogClock;
use crate::observe::Metrics;
use crate::status;
use crate::tls::Identity;
use rota_raft::RaftNode;
use rota_state_machine::{AuthScope, TenantId, Token};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

/// How every token's secret starts: tells a rota token from other secrets at a glance
/// (and to secret scanners).
pub const TOKEN_PREFIX: &str = "rota_";
/// Where a forwarded call carries its caller, from a follower to the leader.
const PRINCIPAL_KEY: &str = "rota-principal-bin";
/// The URI prefix of a scope in a client certificate (`rota://scope/orch:admin`).
pub const SCOPE_URI: &str = "rota://scope/";
/// The URI prefix of a tenant a client certificate is bound to (`rota://tenant/acme`).
pub const TENANT_URI: &str = "rota://tenant/";

/// Who a call is made by, as the node established it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// `token:NAME` or `client:NAME`; `None` when auth is off (the caller's own word stands).
    pub name: Option<String>,
    /// What it may do.
    pub scopes: BTreeSet<AuthScope>,
    /// The only tenants it may reach; `None`: every tenant.
    pub tenants: Option<BTreeSet<TenantId>>,
    /// The SHA-256 of its token, if it came with one: the leader checks it again.
    token: Option<[u8; 32]>,
}

impl Principal {
    /// Everyone, when auth is off.
    pub fn open() -> Self {
        Self {
            name: None,
            scopes: AuthScope::ALL.into_iter().collect(),
            tenants: None,
            token: None,
        }
    }

    fn of_token(token: &Token) -> Self {
        Self {
            name: Some(format!("token:{}", token.name)),
            scopes: token.scopes.clone(),
            tenants: (!token.tenants.is_empty()).then(|| token.tenants.clone()),
            token: Some(token.hash),
        }
    }

    /// How stamps and logs name it.
    pub fn display(&self) -> &str {
        self.name.as_deref().unwrap_or("anonymous (auth off)")
    }

    /// Refused (and logged) unless it holds `scope`.
    pub fn require(&self, scope: AuthScope) -> Result<(), Status> {
        if self.scopes.contains(&scope) {
            return Ok(());
        }
        Err(self.refused(status::missing_scope(format!(
            "{} lacks the scope {scope}",
            self.display()
        ))))
    }

    /// Whether it may see `tenant`'s work (for filtering what it reads).
    pub fn allows(&self, tenant: &TenantId) -> bool {
        self.tenants
            .as_ref()
            .is_none_or(|only| only.contains(tenant))
    }

    /// Refused (and logged) unless it may reach `tenant`'s work.
    pub fn reach(&self, tenant: &TenantId) -> Result<(), Status> {
        match &self.tenants {
            Some(only) if !only.contains(tenant) => {
                Err(self.refused(status::other_tenant(format!(
                    "{} is bound to tenants {}; tenant {:?} is not one of them",
                    self.display(),
                    list(only),
                    tenant.0
                ))))
            }
            _ => Ok(()),
        }
    }

    /// Refused (and logged) if it is bound to tenants: `what` is cluster-wide.
    pub fn unbound(&self, what: &str) -> Result<(), Status> {
        match &self.tenants {
            Some(only) => Err(self.refused(status::other_tenant(format!(
                "{what} is cluster-wide; {} is bound to tenants {}",
                self.display(),
                list(only)
            )))),
            None => Ok(()),
        }
    }

    /// Logs a refusal of this principal's call and hands it back.
    pub fn refused(&self, refusal: Status) -> Status {
        tracing::warn!(principal = %self.display(), why = %refusal.message(), "refused a call");
        refusal
    }
}

fn list(tenants: &BTreeSet<TenantId>) -> String {
    tenants
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every public RPC and the scope it needs. A method missing here is refused to everyone;
/// only the gRPC health service (not guarded) answers without credentials.
const RULES: &[(&str, AuthScope)] = {
    use AuthScope::*;
    &[
        ("/rota.v1.JobService/Enqueue", Write),
        ("/rota.v1.JobService/EnqueueBatch", Write),
        ("/rota.v1.JobService/SubmitPlan", Write),
        ("/rota.v1.JobService/CancelJob", Write),
        ("/rota.v1.JobService/ReplayJob", Write),
        ("/rota.v1.JobService/GetPlan", Read),
        ("/rota.v1.JobService/GetJob", Read),
        ("/rota.v1.JobService/ListJobs", Read),
        ("/rota.v1.JobService/ListDeadLetters", Read),
        ("/rota.v1.JobService/GetLineage", Read),
        ("/rota.v1.JobService/CreateSchedule", Write),
        ("/rota.v1.JobService/GetSchedule", Read),
        ("/rota.v1.JobService/ListSchedules", Read),
        ("/rota.v1.JobService/PauseSchedule", Write),
        ("/rota.v1.JobService/ResumeSchedule", Write),
        ("/rota.v1.JobService/DeleteSchedule", Write),
        ("/rota.v1.JobService/BackfillSchedule", Write),
        ("/rota.v1.JobService/CancelPlan", Write),
        ("/rota.v1.WorkerService/Lease", Lease),
        ("/rota.v1.WorkerService/Heartbeat", Lease),
        ("/rota.v1.WorkerService/Complete", Lease),
        ("/rota.v1.WorkerService/CompleteBatch", Lease),
        ("/rota.v1.AdminService/SetQuota", Quota),
        ("/rota.v1.AdminService/Throttle", Quota),
        ("/rota.v1.AdminService/PauseSource", Quota),
        ("/rota.v1.AdminService/ResumeSource", Quota),
        ("/rota.v1.AdminService/ConfigureBreaker", Admin),
        ("/rota.v1.AdminService/ResetBreaker", Admin),
        ("/rota.v1.AdminService/SetMaintenance", Admin),
        ("/rota.v1.AdminService/GetGovernance", Read),
        ("/rota.v1.AdminService/GovernanceHistory", Read),
        ("/rota.v1.AdminService/ExportAudit", Admin),
        ("/rota.v1.AdminService/ReleaseLease", Admin),
        ("/rota.v1.AdminService/BlockTenant", Quota),
        ("/rota.v1.AdminService/AcknowledgeIncident", Admin),
        ("/rota.v1.AdminService/ResolveIncident", Admin),
        ("/rota.v1.AdminService/SetRetention", Admin),
        ("/rota.v1.AdminService/ClusterStatus", Read),
        ("/rota.v1.AdminService/InitCluster", Admin),
        ("/rota.v1.AdminService/AddNode", Admin),
        ("/rota.v1.AdminService/RemoveNode", Admin),
        ("/rota.v1.AdminService/TransferLeader", Admin),
        ("/rota.v1.AdminService/SaveSnapshot", Admin),
        ("/rota.v1.AdminService/CreateToken", Admin),
        ("/rota.v1.AdminService/ListTokens", Admin),
        ("/rota.v1.AdminService/RevokeToken", Admin),
        // Once per cluster, by an administrator: see `Admin::bootstrap_token`.
        ("/rota.v1.AdminService/BootstrapToken", Admin),
    ]
};

/// The scope the RPC at `path` (`/package.Service/Method`) needs; `None` for one rota does
/// not know, which is refused.
pub fn needed(path: &str) -> Option<AuthScope> {
    RULES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|&(_, scope)| scope)
}

/// A new token's secret and the hash the cluster keeps of it.
pub fn new_secret() -> Result<(String, [u8; 32]), Status> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| status::internal(format!("no randomness for a token: {e}")))?;
    let secret = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let hash = hash_secret(&secret);
    Ok((secret, hash))
}

fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The scopes and tenants a client certificate carries (`rota://scope/…`,
/// `rota://tenant/…`). A certificate that names no scope holds none: it authenticates and
/// may do nothing, like one made before scopes existed.
pub fn certificate_grants(
    der: &[u8],
) -> Result<(BTreeSet<AuthScope>, Option<BTreeSet<TenantId>>), Status> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| status::unauthenticated(format!("the client certificate: {e}")))?;
    let names = cert
        .subject_alternative_name()
        .map_err(|e| status::unauthenticated(format!("the client certificate: {e}")))?;
    let mut scopes = BTreeSet::new();
    let mut tenants = BTreeSet::new();
    for name in names.iter().flat_map(|ext| ext.value.general_names.iter()) {
        let x509_parser::extensions::GeneralName::URI(uri) = name else {
            continue;
        };
        if let Some(scope) = uri.strip_prefix(SCOPE_URI) {
            scopes
                .extend(AuthScope::parse(scope).map_err(|e| {
                    status::unauthenticated(format!("the client certificate: {e}"))
                })?);
        } else if let Some(tenant) = uri.strip_prefix(TENANT_URI) {
            if !crate::tls::identity::valid_client_name(tenant) {
                return Err(status::unauthenticated(format!(
                    "the client certificate names tenant {tenant:?}, which is no tenant name"
                )));
            }
            tenants.insert(TenantId::from(tenant));
        }
    }
    if tenants.len() > rota_state_machine::MAX_TOKEN_TENANTS {
        return Err(status::unauthenticated(format!(
            "the client certificate names {} tenants; a principal is bound to at most {}",
            tenants.len(),
            rota_state_machine::MAX_TOKEN_TENANTS
        )));
    }
    Ok((scopes, (!tenants.is_empty()).then_some(tenants)))
}

/// Where a guarded service listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// Clients: tokens and client certificates.
    Client,
    /// Nodes forwarding their clients' calls (the peer port's own check admitted the node).
    Peer,
}

/// How long a follower that does not know a presented token waits for its log to bring
/// it: a token created through the leader a moment ago may not have reached this node yet.
const NEW_TOKEN_WAIT: Duration = Duration::from_millis(300);

/// What every guard of one node shares.
pub struct Gate {
    enabled: bool,
    clock: LogClock,
    raft: Arc<RaftNode>,
}

impl Gate {
    /// A gate that checks principals when `enabled` (auth on), reading tokens and log time
    /// through `clock`.
    pub fn new(enabled: bool, clock: LogClock, raft: Arc<RaftNode>) -> Arc<Self> {
        Arc::new(Self {
            enabled,
            clock,
            raft,
        })
    }

    /// Establishes who sent `request` and checks the call's scope; the principal goes into
    /// the request's extensions for the service's own (tenant) checks. Refusals are logged
    /// with the method and, once known, the principal.
    async fn admit(&self, port: Port, request: &mut http::Request<Body>) -> Result<(), Status> {
        if !self.enabled {
            request.extensions_mut().insert(Principal::open());
            return Ok(());
        }
        let path = request.uri().path().to_owned();
        // What the request says of its caller, taken out before any wait (a request is not
        // `Sync`, so no reference to it may be held across one).
        let metadata = MetadataMap::from_headers(request.headers().clone());
        let leaf = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
            .and_then(|certs| certs.first().map(|c| c.as_ref().to_vec()));
        let principal = match self.principal(port, &metadata, leaf.as_deref()).await {
            Ok(principal) => principal,
            Err(refusal) => {
                tracing::warn!(method = %path, ?port, why = %refusal.message(), "refused a call");
                return Err(refusal);
            }
        };
        match needed(&path) {
            Some(scope) => {
                let _method = tracing::warn_span!("call", method = %path).entered();
                principal.require(scope)?;
            }
            // A call this node does not know (a newer client's), as a server without the
            // method answers it: refused either way.
            None => return Err(Status::unimplemented(format!("{path} is not served here"))),
        }
        request.extensions_mut().insert(principal);
        Ok(())
    }

    /// Who sent an HTTP request for `path` with `headers`, over a connection whose client
    /// certificate is `leaf`: what `admit` establishes for a gRPC call, scope left to the
    /// route. Refusals are logged with the path.
    pub async fn authenticate(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        leaf: Option<&[u8]>,
    ) -> Result<Principal, Status> {
        if !self.enabled {
            return Ok(Principal::open());
        }
        let metadata = MetadataMap::from_headers(headers.clone());
        let principal = self.principal(Port::Client, &metadata, leaf).await;
        if let Err(refusal) = &principal {
            tracing::warn!(path, why = %refusal.message(), "refused an HTTP call");
        }
        principal
    }

    async fn principal(
        &self,
        port: Port,
        metadata: &MetadataMap,
        leaf: Option<&[u8]>,
    ) -> Result<Principal, Status> {
        if port == Port::Peer {
            return self.forwarded(metadata);
        }
        if let Some(value) = metadata.get("authorization") {
            let secret = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|s| s.starts_with(TOKEN_PREFIX))
                .ok_or_else(|| {
                    status::unauthenticated(format!(
                        "the authorization header is not \"Bearer {TOKEN_PREFIX}…\""
                    ))
                })?;
            return self.token(&hash_secret(secret)).await;
        }
        match leaf {
            Some(leaf) => match crate::tls::identity_of(leaf) {
                Ok(Identity::Client(name)) => {
                    let (scopes, tenants) = certificate_grants(leaf)?;
                    Ok(Principal {
                        name: Some(format!("client:{name}")),
                        scopes,
                        tenants,
                        token: None,
                    })
                }
                Ok(Identity::Node(id)) => Err(status::unauthenticated(format!(
                    "node {id}'s certificate is for the peer port; clients use a client certificate or a token"
                ))),
                Err(e) => Err(status::unauthenticated(format!("the client certificate: {e}"))),
            },
            None => Err(status::unauthenticated(
                "this cluster needs credentials: a bearer token (authorization: Bearer rota_…, ROTA_TOKEN) or a client certificate of its CA",
            )),
        }
    }

    /// The live token whose secret hashes to `hash`. A follower that does not know it
    /// waits a moment for its log to bring it (woken by each change it applies), in case
    /// it was just created.
    async fn token(&self, hash: &[u8; 32]) -> Result<Principal, Status> {
        let deadline = tokio::time::Instant::now() + NEW_TOKEN_WAIT;
        let mut applied = self.raft.metrics();
        loop {
            if let Some(found) = self.lookup(hash) {
                return found;
            }
            if self.raft.is_leader()
                || tokio::time::timeout_at(deadline, applied.changed())
                    .await
                    .is_err()
            {
                return Err(unknown_token());
            }
        }
    }

    /// The token whose secret hashes to `hash`, if this node knows it: live, or expired (in
    /// log time as this node reads it).
    fn lookup(&self, hash: &[u8; 32]) -> Option<Result<Principal, Status>> {
        self.clock.read(|state, now_ms| {
            state.token_by_hash(hash).map(|token| {
                if token.expires_ms.is_some_and(|at| at <= now_ms) {
                    Err(status::unauthenticated(format!(
                        "token {:?} has expired",
                        token.name
                    )))
                } else {
                    Ok(Principal::of_token(token))
                }
            })
        })
    }

    /// The principal a follower forwarded. A token's is checked again against this node's
    /// state (the leader's, which has applied every revocation it acknowledged).
    fn forwarded(&self, metadata: &MetadataMap) -> Result<Principal, Status> {
        let bytes = metadata
            .get_bin(PRINCIPAL_KEY)
            .and_then(|v| v.to_bytes().ok())
            .ok_or_else(|| status::unauthenticated("a forwarded call must carry its caller"))?;
        let principal: Principal = postcard::from_bytes(&bytes).map_err(|e| {
            status::unauthenticated(format!("a forwarded call's caller does not decode: {e}"))
        })?;
        match principal.token {
            Some(hash) => self.lookup(&hash).unwrap_or_else(|| Err(unknown_token())),
            None => Ok(principal),
        }
    }
}

fn unknown_token() -> Status {
    status::unauthenticated("the token is not one this cluster knows (unknown or revoked)")
}

/// Puts `principal` on a call this node forwards to its leader.
pub fn carry(principal: &Principal, metadata: &mut MetadataMap) -> Result<(), Status> {
    let bytes = postcard::to_stdvec(principal)
        .map_err(|e| status::internal(format!("encoding the caller to forward: {e}")))?;
    metadata.insert_bin(PRINCIPAL_KEY, MetadataValue::from_bytes(&bytes));
    Ok(())
}

/// The principal the guard put on `request`. Every public service sits behind a guard, so
/// a request without one is refused rather than served as anyone.
pub fn principal_of<T>(request: &tonic::Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| status::internal("the call reached a service without passing its guard"))
}

/// A public service behind the node's gate.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    gate: Arc<Gate>,
    port: Port,
    metrics: Arc<Metrics>,
}

impl<S> Guarded<S> {
    /// `inner`, reached only through `gate`; each call is counted in `metrics`.
    pub fn new(inner: S, gate: Arc<Gate>, port: Port, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            gate,
            port,
            metrics,
        }
    }
}

/// The gRPC status a response carries in its headers (an error answered at once), or OK
/// (the status of a success comes in the trailers), and the error's `rota-error` kind.
fn answered(response: &http::Response<Body>) -> (tonic::Code, &str) {
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
    let code = header("grpc-status")
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32);
    // Our own kinds are short snake_case names; anything else is not a label.
    let kind = match header(rota_client::ERROR_KIND_KEY) {
        Some(kind)
            if kind.len() <= 40 && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
        {
            kind
        }
        Some(_) => "other",
        None if code == tonic::Code::Ok => "",
        None => "unknown",
    };
    (code, kind)
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tonic::codegen::Service<http::Request<Body>> for Guarded<S>
where
    S: tonic::codegen::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The service that was polled ready serves; a fresh clone waits for the next call.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let gate = self.gate.clone();
        let port = self.port;
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            // A known method's path, never what a caller made up: labels stay bounded.
            let method = RULES
                .iter()
                .find(|(p, _)| *p == request.uri().path())
                .map_or("unknown", |&(p, _)| p);
            let response = match gate.admit(port, &mut request).await {
                Ok(()) => inner.call(request).await?,
                Err(refusal) => refusal.into_http(),
            };
            let (code, kind) = answered(&response);
            metrics.calls.rpc(method, code, kind, started.elapsed());
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_every_service_has_a_scope() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(rota_client::proto::FILE_DESCRIPTOR_SET)
            .expect("the build wrote the descriptors");
        let mut paths = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        // All three services are there, so the walk saw what the node serves.
        for service in ["JobService", "WorkerService", "AdminService"] {
            assert!(
                paths.iter().any(|p| p.contains(&format!(".{service}/"))),
                "{service} missing from {paths:?}"
            );
        }
        let unruled: Vec<&String> = paths.iter().filter(|p| needed(p).is_none()).collect();
        assert!(
            unruled.is_empty(),
            "RPCs without a scope in RULES: {unruled:?}"
        );
        // And no rule names an RPC that does not exist (a typo would leave one unguarded).
        for (path, _) in RULES {
            assert!(paths.iter().any(|p| p == path), "{path} is no RPC");
        }
    }

    #[test]
    fn secrets_are_fresh_prefixed_and_hashed() {
        let (a, hash_a) = new_secret().unwrap();
        let (b, _) = new_secret().unwrap();
        assert_ne!(a, b);
        assert!(
            a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64,
            "{a}"
        );
        assert_eq!(hash_secret(&a), hash_a);
    }

    #[test]
    fn a_bound_principal_reaches_only_its_tenants() {
        let mut p = Principal::open();
        p.name = Some("token:acme-worker".to_owned());
        p.tenants = Some([TenantId::from("acme")].into());
        assert!(p.reach(&TenantId::from("acme")).is_ok());
        let refusal = p.reach(&TenantId::from("globex")).unwrap_err();
        assert_eq!(refusal.code(), tonic::Code::PermissionDenied);
        assert!(
            refusal.message().contains("globex"),
            "{}",
            refusal.message()
        );
        assert!(p.unbound("maintenance").is_err());
        assert!(Principal::open().unbound("maintenance").is_ok());
    }
}
