//! Every way an API request can fail, and the JSON body each one becomes:
//! `{"error": {"code": "...", "message": "..."}}`.
//!
//! `code` is stable (scripts match on it); `message` is for people and says what to change.
//! Client mistakes are 4xx; only failures inside the node (database, panics) are 5xx.

use std::time::Duration;

use alloy::primitives::B256;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth::TokenError;
use super::view::ViewError;
use crate::lease::RepoError;

/// Why an API request (or the API's start-up) failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A POST without a valid bearer token. HTTP 401 with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The request's `Host` is not a loopback name while the API only answers loopback clients
    /// (DNS-rebinding protection). HTTP 403.
    #[error(
        "host {0:?} is not a loopback name; this API answers only requests addressed to \
         127.0.0.1, [::1] or localhost (set `ApiLimits::allow_any_host` to serve other names)"
    )]
    ForbiddenHost(String),
    /// A lease id that is not `0x` + 64 hex digits. HTTP 400.
    #[error("lease id {0:?} is malformed; expected 0x followed by 64 hex digits (32 bytes)")]
    InvalidLeaseId(String),
    /// A host address that is not `0x` + 40 hex digits. HTTP 400.
    #[error("host address {0:?} is malformed; expected 0x followed by 40 hex digits (a wallet)")]
    InvalidAddress(String),
    /// The reliability index has no lease and no registration of this host. HTTP 404.
    #[error(
        "the reliability index has no lease and no registration of host {0}; check the \
         address (a host wallet, not a peer id)"
    )]
    HostNotFound(alloy::primitives::Address),
    /// The reliability index has not caught up with the chain since the node started. HTTP 503.
    #[error(
        "the reliability index is still catching up with the chain (indexed block {}, head {}{}); \
         try again shortly",
        opt(.block),
        opt(.head),
        .error.as_deref().map(|e| format!("; last error: {e}")).unwrap_or_default()
    )]
    IndexSyncing {
        /// Indexed up to this block.
        block: Option<u64>,
        /// The chain head.
        head: Option<u64>,
        /// The index's last error.
        error: Option<String>,
    },
    /// A query string the route does not understand. HTTP 400.
    #[error("{0}")]
    InvalidQuery(String),
    /// A request body that could not be used. HTTP 400, 413, 415 or 422 (in `status`).
    #[error("{message}")]
    InvalidBody {
        /// 400 (not JSON), 413 (too large), 415 (not `application/json`), 422 (wrong fields).
        status: StatusCode,
        /// Stable code.
        code: &'static str,
        /// What was wrong.
        message: String,
    },
    /// No lease with this id in the node's database. HTTP 404.
    #[error("no lease {0} on this host")]
    LeaseNotFound(B256),
    /// No route for this path. HTTP 404.
    #[error("no route {method} {path}; GET /openapi.json lists the routes")]
    RouteNotFound {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
    /// The path exists but not with this method. HTTP 405.
    #[error("{path} does not accept {method}; it accepts {allowed}")]
    MethodNotAllowed {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// The methods the route accepts, comma-separated.
        allowed: String,
    },
    /// The request body did not arrive within the body-read timeout. HTTP 408, and the
    /// connection is closed.
    #[error(
        "the request body did not arrive within {0:?} of its headers; send the whole body \
         with the request"
    )]
    BodyTimeout(Duration),
    /// The request did not finish within the API's request timeout. HTTP 503.
    #[error("the node did not answer within {0:?}; it may be busy, try again")]
    Timeout(Duration),
    /// The node could not answer.
    #[error(transparent)]
    Node(#[from] ViewError),
    /// Reading the lease database failed. HTTP 500.
    #[error(transparent)]
    Database(#[from] RepoError),
    /// The API token file is unusable (start-up only, never a response).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A handler panicked. HTTP 500.
    #[error("internal error while handling the request ({0}); see the node's log")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::ForbiddenHost(_) => StatusCode::FORBIDDEN,
            ApiError::InvalidLeaseId(_)
            | ApiError::InvalidAddress(_)
            | ApiError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidBody { status, .. } => *status,
            ApiError::LeaseNotFound(_)
            | ApiError::HostNotFound(_)
            | ApiError::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Timeout(_) | ApiError::IndexSyncing { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Node(ViewError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Node(ViewError::Conflict(_)) => StatusCode::CONFLICT,
            ApiError::Node(ViewError::Failed { .. })
            | ApiError::Database(_)
            | ApiError::Token(_)
            | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code in the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::ForbiddenHost(_) => "forbidden_host",
            ApiError::InvalidLeaseId(_) => "invalid_lease_id",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::InvalidAddress(_) => "invalid_address",
            ApiError::HostNotFound(_) => "host_not_found",
            ApiError::IndexSyncing { .. } => "index_syncing",
            ApiError::InvalidBody { code, .. } => code,
            ApiError::LeaseNotFound(_) => "lease_not_found",
            ApiError::RouteNotFound { .. } => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::Timeout(_) => "timeout",
            ApiError::Node(ViewError::Unavailable(_)) => "node_unavailable",
            ApiError::Node(ViewError::Conflict(_)) => "conflict",
            ApiError::Node(ViewError::Failed { .. }) => "node_error",
            ApiError::Database(_) => "database",
            ApiError::Token(_) => "token",
            ApiError::Internal(_) => "internal",
        }
    }

    /// Turns one of axum's body rejections (JSON, bytes) into an `InvalidBody`, keeping its
    /// status but giving it a JSON body and a stable code.
    pub(crate) fn body(status: StatusCode, message: String) -> Self {
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
            _ => "invalid_json",
        };
        // A rejection axum considers a server fault (it has none for bodies today) must still
        // not turn a client's bad body into a 5xx.
        let status = if status.is_client_error() {
            status
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::InvalidBody {
            status,
            code,
            message,
        }
    }
}

/// A block number for a message, `none` when unknown.
fn opt(n: &Option<u64>) -> String {
    n.map_or_else(|| "none".to_owned(), |n| n.to_string())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(target: "api", code = self.code(), error = %self, "request failed");
        } else {
            tracing::debug!(target: "api", code = self.code(), error = %self, "request refused");
        }
        let body = json!({ "error": { "code": self.code(), "message": self.to_string() } });
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
