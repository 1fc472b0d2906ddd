//! The emulated identity provider's OAuth 2.0 token endpoint (client credentials, RFC 6749 §4.4),
//! so that the registrar's token flow is tested for real.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use super::auth::{Authenticator, OAuthError};

/// Path of the token endpoint, as at the operator's identity provider.
pub const TOKEN_PATH: &str = "/oauth2/token";

/// The form body of a token request.
#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    grant_type: Option<String>,
    scope: Option<String>,
    /// `client_secret_post` authentication, accepted besides HTTP Basic.
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /oauth2/token`.
pub async fn token(
    State(auth): State<Arc<Authenticator>>,
    headers: HeaderMap,
    Form(form): Form<TokenRequest>,
) -> Response {
    let credentials =
        basic_credentials(&headers).or_else(|| Some((form.client_id.clone()?, form.client_secret.clone()?)));
    let result = match (&credentials, &form.grant_type) {
        (None, _) => Err(OAuthError::InvalidClient),
        (_, None) => Err(OAuthError::InvalidRequest),
        (Some((id, secret)), Some(grant_type)) => auth.issue(id, secret, grant_type, form.scope.as_deref()),
    };
    match result {
        Ok(issued) => {
            info!(client_id = credentials.as_ref().map(|(id, _)| id.as_str()), scope = %issued.scope, "access token issued");
            let body = json!({
                "access_token": issued.access_token,
                "token_type": "bearer",
                "expires_in": issued.expires_in.as_secs(),
                "scope": issued.scope,
            });
            ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
        }
        Err(error) => {
            warn!(client_id = credentials.as_ref().map(|(id, _)| id.as_str()), %error, "token request refused");
            let status = match error {
                OAuthError::InvalidClient => StatusCode::UNAUTHORIZED,
                _ => StatusCode::BAD_REQUEST,
            };
            let body = Json(json!({ "error": error.to_string() }));
            let mut response = (status, body).into_response();
            if error == OAuthError::InvalidClient {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"oauth2\""));
            }
            response
        }
    }
}

/// Client id and secret from `Authorization: Basic`, form-urlencoded inside as RFC 6749 §2.3.1 says.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// Decodes one form-urlencoded component (`+` for space, `%XX` escapes).
fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}
