//! The dashboard at `/`: three static files embedded in the binary (plain HTML, CSS and
//! JavaScript, no build step) that read the REST API and watch `/api/events`. The files
//! hold no data, so they are served without credentials; what the page then reads asks for
//! the same token as any other REST call (the page prompts for one when the node answers
//! 401).

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, MethodRouter};
use axum::Router;

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/style.css");

/// What every dashboard file is sent with: a page that never runs foreign scripts, never
/// sits in a frame, and is revalidated rather than cached across a node's upgrade.
const SECURITY: [(header::HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-cache"),
];

/// A route serving `body` as `content_type`.
fn asset<S: Clone + Send + Sync + 'static>(
    content_type: &'static str,
    body: &'static str,
) -> MethodRouter<S> {
    get(move || async move {
        let [a, b, c, d] = SECURITY;
        ([(header::CONTENT_TYPE, content_type), a, b, c, d], body).into_response()
    })
}

/// The dashboard's routes: `/` and its two assets.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", asset("text/html; charset=utf-8", INDEX))
        .route(
            "/dashboard/app.js",
            asset("text/javascript; charset=utf-8", SCRIPT),
        )
        .route(
            "/dashboard/style.css",
            asset("text/css; charset=utf-8", STYLE),
        )
}
