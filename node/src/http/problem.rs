//! Errors over HTTP: `application/problem+json` (RFC 9457) with the same `kind` a gRPC
//! caller finds under `rota-error`, and an HTTP status that says the same as the gRPC code.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rota_client::{ERROR_KIND_KEY, LEADER_KEY};
use serde::Serialize;
use tonic::{Code, Status};
use utoipa::ToSchema;

/// An error's body: `type` is `urn:rota:error:KIND`, `kind` the kind alone (as gRPC's
/// `rota-error` names it), `detail` what went wrong for people (it may change; match on
/// `kind`). Besides the gRPC kinds, HTTP has its own: `unknown_path` (404),
/// `method_not_allowed` (405), `unsupported_media_type` (415: a body that is not
/// `application/json`), `invalid_input` for a body that is not the JSON a route takes, and
/// `over_budget` (413) for a body over the limit.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Problem)]
pub struct ProblemBody {
    /// `urn:rota:error:` and the kind.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// The stable kind to match on, as gRPC's `rota-error`.
    pub kind: String,
    /// On `not_leader`: the leader's peer address, when this node knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

/// An error answered as problem+json (boxed: errors travel in `Result`s).
#[derive(Clone, Debug)]
pub struct Problem(pub Box<ProblemBody>);

impl std::ops::Deref for Problem {
    type Target = ProblemBody;

    fn deref(&self) -> &ProblemBody {
        &self.0
    }
}

impl Problem {
    /// A problem of `kind` answered with `status`.
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Self(Box::new(ProblemBody {
            type_uri: format!("urn:rota:error:{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            kind: kind.to_owned(),
            leader: None,
        }))
    }

    /// `invalid_input` (400): a field of the request is missing, malformed or over a limit.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", detail)
    }

    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// The HTTP status of a gRPC code (and, where one code covers several, of its kind).
fn http_status(code: Code, kind: &str) -> StatusCode {
    match code {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted if kind == "over_budget" => StatusCode::PAYLOAD_TOO_LARGE,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable | Code::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The kind of a status that carries none (from the gRPC layer, not rota): as the proto's
/// error rules say to treat it.
fn kind_without_key(code: Code) -> &'static str {
    match code {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => "unavailable",
        Code::InvalidArgument | Code::OutOfRange => "invalid_input",
        Code::Unimplemented => "unimplemented",
        _ => "internal",
    }
}

impl From<Status> for Problem {
    fn from(status: Status) -> Self {
        let meta = status.metadata();
        let kind = meta
            .get(ERROR_KIND_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| kind_without_key(status.code()).to_owned());
        let mut problem = Self::new(
            http_status(status.code(), &kind),
            &kind,
            status.message().to_owned(),
        );
        problem.0.leader = meta
            .get(LEADER_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        problem
    }
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let kind = match status {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            // Over the body limit: as gRPC's byte budgets answer.
            StatusCode::PAYLOAD_TOO_LARGE => "over_budget",
            _ => "invalid_input",
        };
        // 422 (a body that is JSON but not the request's shape) is answered as 400, as
        // gRPC answers a bad field: one status for every invalid input.
        let status = match status {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            other => other,
        };
        Self::new(status, kind, rejection.body_text())
    }
}

impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Self {
        Self::invalid(rejection.body_text())
    }
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        Self::invalid(rejection.body_text())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry = status == StatusCode::SERVICE_UNAVAILABLE;
        let body = serde_json::to_vec(&*self.0).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if retry {
            // Elections take about a second; the same request may be sent again then.
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rota\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_keeps_its_kind_and_gets_the_matching_http_status() {
        let problem = Problem::from(crate::status::with_kind(
            Code::FailedPrecondition,
            "stale_lease",
            "lease 7 is not live",
        ));
        assert_eq!(
            (problem.status, problem.kind.as_str()),
            (409, "stale_lease")
        );
        assert_eq!(problem.type_uri, "urn:rota:error:stale_lease");
        let budget = Problem::from(crate::status::over_budget("max_entry_bytes", "too big"));
        assert_eq!(budget.status, 413);
        let bare = Problem::from(Status::unavailable("connection refused"));
        assert_eq!((bare.status, bare.kind.as_str()), (503, "unavailable"));
        let response = bare.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
