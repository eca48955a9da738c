//! The HTTP face: the REST API (JSON in camelCase, errors as problem+json), its OpenAPI
//! document at `/api/openapi.json` (generated from the handlers by utoipa), the event stream
//! at `/api/events`, `/livez` and `/readyz`, and the dashboard at `/`.
//!
//! It listens on its own port, beside the client port: gRPC needs HTTP/2 (tonic's TLS
//! offers only `h2` in ALPN, so an HTTP/1.1 client over TLS, such as Python's urllib3,
//! could not even finish its handshake on the client port), while curl, browsers and
//! scripts need HTTP/1.1 as well. Its own listener offers both, and lets an operator expose
//! or firewall the REST API apart from gRPC. TLS and auth are the client port's: the same
//! certificates, bearer tokens and client certificates, the same scopes per method (each
//! route names the gRPC method it stands for), the same forwarding to the leader.

mod dashboard;
mod events;
mod govern;
mod model;
mod problem;
mod records;
mod routes;
mod serve;

pub use problem::Problem;
pub use serve::serve;

use crate::api::Api;
use crate::auth::Gate;
use crate::observe::Metrics;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use rota_raft::RaftNode;
use std::sync::{Arc, OnceLock};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every route shares.
pub struct Http {
    api: Arc<Api>,
    gate: Arc<Gate>,
    raft: Arc<RaftNode>,
    metrics: Arc<Metrics>,
    /// The OpenAPI document, once the router that describes it is built.
    openapi: OnceLock<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rota",
        description = "rota's REST API: jobs, workers and the cluster over HTTP and JSON. Every node answers; writes reaching a follower are forwarded to the leader. On a cluster with TLS, authenticate with a bearer token (`Authorization: Bearer rota_…`) or a client certificate of the cluster's CA; each route needs the scope of the gRPC method it stands for. Errors are application/problem+json with a stable `kind`."
    ),
    tags(
        (name = "jobs", description = "Submit, read, cancel and replay jobs"),
        (name = "workers", description = "Lease, heartbeat and complete jobs"),
        (name = "schedules", description = "Recurring jobs on cron or an interval, and backfills of their past fire times"),
        (name = "governance", description = "Quotas, throttles, paused sources, breakers, maintenance"),
        (name = "events", description = "What the cluster does, live, resumable by log position"),
        (name = "cluster", description = "The cluster's state"),
        (name = "health", description = "Liveness and readiness, without credentials"),
    )
)]
struct ApiDoc;

/// Adds the bearer-token security scheme, and requires it of every route that takes
/// credentials: applied to the finished document, once the routes are in it.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("rota_ and 64 hex digits")
                    .description(Some(
                        "On a cluster with TLS: a token, or instead a client certificate of the cluster's CA (mutual TLS). Without TLS, auth is off.",
                    ))
                    .build(),
            ),
        );
        // Every route but health and this document takes credentials when auth is on;
        // the empty requirement says a cluster without TLS asks for none.
        let bearer = SecurityRequirement::new("bearer", Vec::<String>::new());
        for (path, item) in openapi.paths.paths.iter_mut() {
            let guarded = path.starts_with("/api/") || path == "/metrics";
            if !guarded || path == "/api/openapi.json" {
                continue;
            }
            for operation in [&mut item.get, &mut item.post, &mut item.delete]
                .into_iter()
                .flatten()
            {
                operation.security = Some(vec![bearer.clone(), SecurityRequirement::default()]);
            }
        }
    }
}

/// The OpenAPI document, as served at `/api/openapi.json`.
#[utoipa::path(get, path = "/api/openapi.json", tag = "cluster",
    responses((status = 200, description = "This document", content_type = "application/json")))]
async fn openapi_json(
    axum::extract::State(http): axum::extract::State<Arc<Http>>,
) -> impl IntoResponse {
    let doc = http.openapi.get().cloned().unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], doc)
}

async fn unknown_path(uri: Uri) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "unknown_path",
        format!("no route {}: see /api/openapi.json", uri.path()),
    )
}

async fn method_not_allowed(uri: Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not take this method: see /api/openapi.json",
            uri.path()
        ),
    )
}

/// The routes and the OpenAPI document that describes them.
fn routes_and_doc(http: Arc<Http>) -> (Router, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::submit_job, routes::list_jobs))
        .routes(routes!(routes::get_job))
        .routes(routes!(records::signed_job))
        .routes(routes!(routes::cancel_job))
        .routes(routes!(routes::replay_job))
        .routes(routes!(routes::lease))
        .routes(routes!(routes::heartbeat))
        .routes(routes!(routes::complete))
        .routes(routes!(routes::cluster))
        .routes(routes!(govern::submit_plan))
        .routes(routes!(govern::get_plan))
        .routes(routes!(records::cancel_plan))
        .routes(routes!(records::create_schedule, records::list_schedules))
        .routes(routes!(records::get_schedule, records::delete_schedule))
        .routes(routes!(records::pause_schedule))
        .routes(routes!(records::resume_schedule))
        .routes(routes!(records::backfill))
        .routes(routes!(records::lineage))
        .routes(routes!(records::governance_history))
        .routes(routes!(records::acknowledge_incident))
        .routes(routes!(records::resolve_incident))
        .routes(routes!(records::audit))
        .routes(routes!(govern::dead_letters))
        .routes(routes!(govern::set_quota))
        .routes(routes!(govern::throttle))
        .routes(routes!(govern::pause_source))
        .routes(routes!(govern::resume_source))
        .routes(routes!(govern::configure_breaker))
        .routes(routes!(govern::reset_breaker))
        .routes(routes!(govern::maintenance))
        .routes(routes!(govern::governance))
        .routes(routes!(events::events))
        .routes(routes!(routes::livez))
        .routes(routes!(routes::healthz))
        .routes(routes!(routes::readyz))
        .routes(routes!(routes::metrics))
        .routes(routes!(openapi_json))
        .with_state(http)
        .split_for_parts()
}

/// The HTTP face of the node `api` serves, behind `gate`. A body over `body_limit` bytes is
/// refused with 413.
pub fn router(
    api: Arc<Api>,
    gate: Arc<Gate>,
    raft: Arc<RaftNode>,
    metrics: Arc<Metrics>,
    body_limit: usize,
) -> Router {
    let http = Arc::new(Http {
        api,
        gate,
        raft,
        metrics: metrics.clone(),
        openapi: OnceLock::new(),
    });
    let (router, mut doc) = routes_and_doc(http.clone());
    utoipa::Modify::modify(&BearerAuth, &mut doc);
    let _ = http.openapi.set(
        doc.to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string())),
    );
    router
        .merge(dashboard::routes())
        .fallback(unknown_path)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(metrics, counted))
}

/// Counts a request in the metrics, by the route it matched (a template: bounded).
async fn counted(
    axum::extract::State(metrics): axum::extract::State<Arc<Metrics>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // Any token is a method to HTTP: only the standard ones get a label of their own.
    let method = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "other",
    };
    let response = next.run(request).await;
    metrics.calls.http(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
