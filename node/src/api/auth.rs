//! The API token: who may change the node through the API.
//!
//! Every POST needs `Authorization: Bearer <token>`. The token is 32 random bytes, hex, created
//! on first start in `<data_dir>/api.token` with mode 0600, so "may change the node" means "may
//! read a file only the node's user can read" — the same trust as the identity key next to it.
//! A token file others can read is refused, not silently used: anyone on the machine could
//! have copied it.
//!
//! GETs are not authenticated: they only read, and the API listens on loopback by default, where
//! every client is already a local user. The values they show (wallet address, offers, lease
//! ids, earnings) are public on chain or on the p2p network anyway. Browsers cannot read them
//! either: no CORS headers are sent, and the `Host` check (see `layers`) defeats DNS rebinding.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::secret_file;

/// Name of the token file inside the node's data directory.
pub const TOKEN_FILE: &str = "api.token";

/// The bearer token POST requests must present. `Debug` does not show it.
#[derive(Clone)]
pub struct ApiToken(String);

impl ApiToken {
    /// A fresh random token (32 bytes from the operating system, as 64 hex digits).
    pub fn random() -> Result<Self, TokenError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(TokenError::Random)?;
        Ok(Self(alloy::hex::encode(bytes)))
    }

    /// The token text, for a client in the same process (tests, an embedded CLI). Never log it.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this token. Takes the same time wherever the first difference is,
    /// so response timing does not reveal a prefix of the token.
    pub fn matches(&self, candidate: &str) -> bool {
        candidate.as_bytes().ct_eq(self.0.as_bytes()).into()
    }

    #[cfg(test)]
    pub(crate) fn from_text(text: &str) -> Self {
        Self(text.to_owned())
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// Why the token file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Group or others may read the token file.
    #[error(
        "API token file {path} is readable by group or others (mode {mode:04o}); run \
         `chmod 600 {path}` and start again"
    )]
    Permissions {
        /// The token file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading or writing the token file failed.
    #[error("API token file {path}: {source}")]
    Io {
        /// The token file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold a token.
    #[error(
        "API token file {path} is not 64 hex digits; delete it and restart the node to create \
         a new token"
    )]
    Malformed {
        /// The token file.
        path: PathBuf,
    },
    /// The operating system's random source failed.
    #[error("cannot generate an API token: {0}")]
    Random(#[source] getrandom::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TokenError + '_ {
    move |source| TokenError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Loads `<data_dir>/api.token`, or creates it (mode 0600, `data_dir` 0700 if it is created
/// too) with a fresh random token.
pub fn load_or_create_token(data_dir: &Path) -> Result<ApiToken, ApiError> {
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::symlink_metadata(&path) {
        Ok(_) => Ok(load(&path)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match create(&path) {
            // Another process created it between the two calls: use theirs.
            Err(TokenError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                Ok(load(&path)?)
            }
            other => Ok(other?),
        },
        Err(e) => Err(io(&path)(e).into()),
    }
}

fn load(path: &Path) -> Result<ApiToken, TokenError> {
    if let Some(mode) = secret_file::exposed_mode(path).map_err(io(path))? {
        return Err(TokenError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let text = text.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Malformed {
            path: path.to_owned(),
        });
    }
    Ok(ApiToken(text.to_ascii_lowercase()))
}

fn create(path: &Path) -> Result<ApiToken, TokenError> {
    let token = ApiToken::random()?;
    secret_file::create_private(path, &token.0).map_err(io(path))?;
    tracing::info!(target: "api", path = %path.display(), "created API token");
    Ok(token)
}

/// Middleware on every mutating route: refuses the request unless it carries the token.
pub(crate) async fn require_token(
    State(token): State<Arc<ApiToken>>,
    req: Request,
    next: Next,
) -> Response {
    match check(&token, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn check(token: &ApiToken, req: &Request) -> Result<(), ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "missing `Authorization: Bearer <token>` header; the token is in the file api.token in \
         the node's data directory",
        ))?;
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or(ApiError::Unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ))?;
    if token.matches(presented) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "wrong API token; use the one in the file api.token in the node's data directory",
        ))
    }
}
