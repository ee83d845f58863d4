//! Who may read the viewer and its API when it is exposed beyond this host:
//! a token (from a file, e.g. a mounted Kubernetes secret), accepted as
//! `Authorization: Bearer TOKEN` from scripts or as the password of HTTP
//! Basic authentication (any user name) from a browser, which asks for it;
//! and TLS with a certificate and key of the user's.

use std::{path::Path, sync::Arc};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use base64::Engine;
use tokio::net::TcpListener;

pub use axum_server::tls_rustls::RustlsConfig as TlsConfig;

#[derive(Clone, Debug, Default)]
pub struct Access {
    token: Option<Arc<str>>,
}

impl Access {
    /// The token in `path` (its first line, without surrounding blanks).
    pub fn from_token_file(path: &Path) -> anyhow::Result<Access> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the viewer's token file {}: {e}",
                path.display()
            )
        })?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.is_empty() {
            anyhow::bail!(
                "the viewer's token file {} is empty: write the token on its first line",
                path.display()
            );
        }
        Ok(Access {
            token: Some(token.into()),
        })
    }

    pub fn requires_token(&self) -> bool {
        self.token.is_some()
    }

    /// `routes`, answering 401 to a request without the token (when there is one).
    pub fn guard(&self, routes: Router) -> Router {
        match &self.token {
            None => routes,
            Some(token) => {
                routes.layer(middleware::from_fn_with_state(token.clone(), require_token))
            }
        }
    }
}

async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    if offers_token(request.headers(), &token) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"tracer-agent viewer\", charset=\"UTF-8\"",
        )],
        Json(serde_json::json!({
            "error": "this viewer needs its token: Authorization: Bearer TOKEN, \
                      or Basic authentication with the token as the password"
        })),
    )
        .into_response()
}

/// Whether `headers` carry `token` as a bearer token or a Basic password.
fn offers_token(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, credentials)) = value.trim().split_once(' ') else {
        return false;
    };
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        same_secret(credentials.as_bytes(), token.as_bytes())
    } else if scheme.eq_ignore_ascii_case("basic") {
        base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()
            .and_then(|pair| {
                let colon = pair.iter().position(|&b| b == b':')?;
                Some(same_secret(&pair[colon + 1..], token.as_bytes()))
            })
            .unwrap_or(false)
    } else {
        false
    }
}

/// Compares in time that depends on the lengths only, so timing does not
/// reveal how much of a guess was right.
fn same_secret(offered: &[u8], secret: &[u8]) -> bool {
    offered.len() == secret.len()
        && offered
            .iter()
            .zip(secret)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// The certificate (chain) and key, PEM, for serving over TLS.
pub async fn tls_config(certificate: &Path, key: &Path) -> anyhow::Result<TlsConfig> {
    TlsConfig::from_pem_file(certificate, key)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot use the viewer's TLS certificate {} and key {}: {e}",
                certificate.display(),
                key.display()
            )
        })
}

pub(super) async fn serve_tls(
    listener: TcpListener,
    app: Router,
    tls: TlsConfig,
) -> std::io::Result<()> {
    axum_server::from_tcp_rustls(listener.into_std()?, tls)?
        .serve(app.into_make_service())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_token_is_taken_as_bearer_or_basic_password() {
        let token = "s3cret";
        assert!(offers_token(&with_authorization("Bearer s3cret"), token));
        assert!(offers_token(&with_authorization("bearer  s3cret "), token));
        // "anyone:s3cret"
        assert!(offers_token(
            &with_authorization("Basic YW55b25lOnMzY3JldA=="),
            token
        ));
        // ":s3cret", no user name
        assert!(offers_token(
            &with_authorization("Basic OnMzY3JldA=="),
            token
        ));
    }

    #[test]
    fn anything_else_is_refused() {
        let token = "s3cret";
        assert!(!offers_token(&HeaderMap::new(), token));
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Bearer",
            "s3cret",
            "Basic !!!",
            "Basic czNjcmV0",             // "s3cret" with no colon
            "Basic YW55b25lOnMzY3JldDI=", // "anyone:s3cret2"
            "Digest s3cret",
        ] {
            assert!(!offers_token(&with_authorization(wrong), token), "{wrong}");
        }
    }

    #[test]
    fn an_empty_token_file_is_refused() {
        let path = std::env::temp_dir().join(format!("viewer-token-{}", std::process::id()));
        std::fs::write(&path, "\n").unwrap();
        let err = Access::from_token_file(&path).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        std::fs::write(&path, "  tok3n \nrest\n").unwrap();
        let access = Access::from_token_file(&path).unwrap();
        assert_eq!(access.token.as_deref(), Some("tok3n"));
        std::fs::remove_file(&path).unwrap();
    }
}
