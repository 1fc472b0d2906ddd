//! The emulated identity provider's OAuth 2.0 endpoints, as the operator's provider has them
//! (facts in the API reference): the token endpoint (client credentials, RFC 6749 §4.4; the
//! authorization code, §4.1; refresh tokens, rotated, §6), the authorization page where a test
//! subscriber logs in by number and grants a product access, `/userinfo`, token revocation
//! (RFC 7009), and an admin route that withdraws a subscriber's consent, as the subscriber
//! would at the operator's pages. So a TAS's sign-up and token handling are tested for real.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use super::auth::{Authenticator, Grant, OAuthError};
use crate::registry::Registry;
use domain::types::Msisdn;

/// Path of the token endpoint, as at the operator's identity provider.
pub const TOKEN_PATH: &str = "/oauth2/token";
/// Path of the authorization endpoint (the browser is sent here).
pub const AUTHORIZE_PATH: &str = "/oauth2/auth";
/// Path of the userinfo endpoint.
pub const USERINFO_PATH: &str = "/userinfo";
/// Path of the revocation endpoint.
pub const REVOKE_PATH: &str = "/oauth2/revoke";
/// Path of the admin route withdrawing a consent (`?subject=<number>&client=<id>`), after the
/// provider's own admin API.
pub const CONSENT_PATH: &str = "/admin/oauth2/auth/sessions/consent";

/// What the identity provider's routes share.
#[derive(Debug, Clone)]
pub struct IdentityProvider {
    /// The tokens.
    pub auth: Arc<Authenticator>,
    /// The registrations (a withdrawn consent removes those the subscriber's token made).
    pub registry: Arc<Registry>,
}

/// The identity provider's routes.
pub fn router(provider: IdentityProvider) -> axum::Router {
    use axum::routing::{delete, get, post};
    axum::Router::new()
        .route(TOKEN_PATH, post(token))
        .route(AUTHORIZE_PATH, get(authorize_page).post(authorize_decision))
        .route(USERINFO_PATH, get(userinfo))
        .route(REVOKE_PATH, post(revoke))
        .route(CONSENT_PATH, delete(withdraw_consent))
        .with_state(provider)
}

/// The form body of a token request.
#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    grant_type: Option<String>,
    scope: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    refresh_token: Option<String>,
    /// `client_secret_post` authentication, accepted besides HTTP Basic.
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /oauth2/token`.
pub async fn token(
    State(provider): State<IdentityProvider>,
    headers: HeaderMap,
    Form(form): Form<TokenRequest>,
) -> Response {
    let credentials = client_credentials(&headers, &form.client_id, &form.client_secret);
    let grant = match form.grant_type.as_deref() {
        Some("client_credentials") => Some(Grant::ClientCredentials { scope: form.scope.as_deref() }),
        Some("authorization_code") => match (&form.code, &form.redirect_uri) {
            (Some(code), Some(redirect_uri)) => Some(Grant::AuthorizationCode { code, redirect_uri }),
            _ => None,
        },
        Some("refresh_token") => {
            form.refresh_token.as_deref().map(|refresh_token| Grant::RefreshToken { refresh_token })
        }
        Some(_) => Some(Grant::Other),
        None => None,
    };
    let result = match (&credentials, grant) {
        (None, _) => Err(OAuthError::InvalidClient),
        (_, None) => Err(OAuthError::InvalidRequest),
        (Some((id, secret)), Some(grant)) => provider.auth.issue(id, secret, grant),
    };
    let client_id = credentials.as_ref().map(|(id, _)| id.as_str());
    match result {
        Ok(issued) => {
            info!(client_id, grant_type = form.grant_type.as_deref(), scope = %issued.scope, "access token issued");
            let mut body = json!({
                "access_token": issued.access_token,
                "token_type": "bearer",
                "expires_in": issued.expires_in.as_secs(),
                "scope": issued.scope,
            });
            if let Some(refresh_token) = issued.refresh_token {
                body["refresh_token"] = json!(refresh_token);
            }
            ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
        }
        Err(error) => {
            warn!(client_id, grant_type = form.grant_type.as_deref(), %error, "token request refused");
            oauth_error(error)
        }
    }
}

/// An RFC 6749 §5.2 error answer.
fn oauth_error(error: OAuthError) -> Response {
    let status = match error {
        OAuthError::InvalidClient => StatusCode::UNAUTHORIZED,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut response = (status, Json(json!({ "error": error.to_string() }))).into_response();
    if error == OAuthError::InvalidClient {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"oauth2\""));
    }
    response
}

/// The query of the authorization endpoint (and the hidden fields of its form).
#[derive(Debug, Deserialize)]
pub struct AuthorizeRequest {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    /// The test subscriber logging in (the form).
    phone_number: Option<String>,
    /// `grant` or `deny` (the form).
    decision: Option<String>,
}

/// A page saying why the request cannot go back to the client (its redirect URI is not trusted).
fn refused_page(why: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=en><meta charset=utf-8><title>Authorization refused</title>\
         <h1>Authorization refused</h1><p id=error>{}</p></html>",
        escape_html(why)
    );
    (StatusCode::BAD_REQUEST, Html(body)).into_response()
}

/// `GET /oauth2/auth`: the log-in and consent page.
pub async fn authorize_page(
    State(provider): State<IdentityProvider>,
    Query(query): Query<AuthorizeRequest>,
) -> Response {
    let (Some(client_id), Some(redirect_uri)) = (&query.client_id, &query.redirect_uri) else {
        return refused_page("client_id and redirect_uri are required");
    };
    if provider.auth.public_client(client_id, redirect_uri).is_err() {
        return refused_page("unknown client, or a redirect_uri it did not register");
    }
    if query.response_type.as_deref() != Some("code") {
        return refused_page("response_type must be code");
    }
    let hidden = |name: &str, value: &Option<String>| {
        format!("<input type=hidden name={name} value=\"{}\">", escape_html(value.as_deref().unwrap_or_default()))
    };
    let scope = query.scope.clone().unwrap_or_default();
    let body = format!(
        "<!doctype html><html lang=en><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\"><title>Log in (emulated operator)</title>\
         <h1>Log in</h1><p>{client} asks for: <span id=scope>{scope}</span></p>\
         <form method=post action={AUTHORIZE_PATH}>{}{}{}{}{}\
         <label>Phone number <input id=phone_number name=phone_number required placeholder=+4799990001></label>\
         <button id=grant name=decision value=grant>Grant access</button>\
         <button id=deny name=decision value=deny>Deny</button></form></html>",
        hidden("response_type", &query.response_type),
        hidden("client_id", &query.client_id),
        hidden("redirect_uri", &query.redirect_uri),
        hidden("scope", &query.scope),
        hidden("state", &query.state),
        client = escape_html(client_id),
        scope = escape_html(&scope),
    );
    Html(body).into_response()
}

/// `POST /oauth2/auth`: the subscriber's decision; back to the client's redirect URI with a
/// code (or `error=access_denied`) and the client's `state`.
pub async fn authorize_decision(
    State(provider): State<IdentityProvider>,
    Form(form): Form<AuthorizeRequest>,
) -> Response {
    let (Some(client_id), Some(redirect_uri)) = (&form.client_id, &form.redirect_uri) else {
        return refused_page("client_id and redirect_uri are required");
    };
    if provider.auth.public_client(client_id, redirect_uri).is_err() {
        return refused_page("unknown client, or a redirect_uri it did not register");
    }
    let mut back = match url_with_query(redirect_uri) {
        Some(back) => back,
        None => return refused_page("redirect_uri is not a URL"),
    };
    let state = form.state.as_deref().unwrap_or_default();
    let number = form.phone_number.as_deref().map(str::trim).and_then(|number| Msisdn::parse(number).ok());
    let outcome = match (form.decision.as_deref(), number) {
        (Some("grant"), Some(msisdn)) => {
            match provider.auth.grant_code(client_id, redirect_uri, msisdn.clone(), form.scope.as_deref().unwrap_or(""))
            {
                Ok((code, scope)) => {
                    info!(%msisdn, client_id, %scope, "consent granted");
                    Ok((code, scope))
                }
                Err(error) => Err(error.to_string()),
            }
        }
        (Some("grant"), None) => return refused_page("the phone number must be in E.164 form (+ and digits)"),
        _ => Err("access_denied".to_owned()),
    };
    match outcome {
        Ok((code, scope)) => append_query(&mut back, &[("code", &code), ("scope", &scope), ("state", state)]),
        Err(error) => append_query(&mut back, &[("error", &error), ("state", state)]),
    }
    Redirect::to(&back).into_response()
}

/// `redirect_uri` ready for parameters: itself, with `?` or `&` to come.
fn url_with_query(redirect_uri: &str) -> Option<String> {
    let lower = redirect_uri.to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")).then(|| redirect_uri.to_owned())
}

fn append_query(url: &mut String, pairs: &[(&str, &str)]) {
    for (name, value) in pairs {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(name);
        url.push('=');
        url.extend(form_urlencoded::byte_serialize(value.as_bytes()));
    }
}

/// `GET /userinfo` with a user token.
pub async fn userinfo(State(provider): State<IdentityProvider>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(info) = token.and_then(|token| provider.auth.user_info(token)) else {
        let mut response = (StatusCode::UNAUTHORIZED, Json(json!({ "error": "invalid_token" }))).into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        return response;
    };
    // Pairwise subject: the same subscriber looks different to each client.
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{}:{}", info.client_id, info.msisdn).as_bytes());
    let sub: String = digest.as_ref()[..16].iter().map(|byte| format!("{byte:02x}")).collect();
    let mut body = json!({ "sub": sub, "sid": sub });
    if info.phone_scope {
        body["phone_number"] = json!(info.msisdn.as_str());
        body["phone_number_verified"] = json!(true);
    }
    Json(body).into_response()
}

/// The form body of a revocation.
#[derive(Debug, Deserialize)]
pub struct RevokeRequest {
    token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /oauth2/revoke` (RFC 7009): 200 whether or not the token was known.
pub async fn revoke(
    State(provider): State<IdentityProvider>,
    headers: HeaderMap,
    Form(form): Form<RevokeRequest>,
) -> Response {
    let credentials = client_credentials(&headers, &form.client_id, &form.client_secret);
    let (Some((id, secret)), Some(token)) = (credentials, form.token) else {
        return oauth_error(OAuthError::InvalidRequest);
    };
    match provider.auth.revoke_token(&id, &secret, &token) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => oauth_error(error),
    }
}

/// The query of a consent withdrawal.
#[derive(Debug, Deserialize)]
pub struct ConsentQuery {
    subject: Option<String>,
    client: Option<String>,
}

/// `DELETE /admin/oauth2/auth/sessions/consent?subject=<number>&client=<id>`: the subscriber
/// withdrew consent. Its codes and tokens die, and the registration its token made is removed
/// (the product may no longer act for the subscriber). 204.
pub async fn withdraw_consent(State(provider): State<IdentityProvider>, Query(query): Query<ConsentQuery>) -> Response {
    let (Some(subject), Some(client)) = (query.subject, query.client) else {
        return (StatusCode::BAD_REQUEST, "subject and client are required").into_response();
    };
    let Ok(msisdn) = Msisdn::parse(&subject) else {
        return (StatusCode::BAD_REQUEST, "subject must be an E.164 number").into_response();
    };
    let tokens = provider.auth.revoke_consent(&msisdn, &client);
    let registration = provider.registry.remove_user_registration(&msisdn);
    info!(%msisdn, client, tokens, registration, "consent withdrawn");
    StatusCode::NO_CONTENT.into_response()
}

/// `text` safe inside HTML text and double-quoted attributes.
fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// The client's id and secret: HTTP Basic, else `client_secret_post` form fields.
fn client_credentials(headers: &HeaderMap, id: &Option<String>, secret: &Option<String>) -> Option<(String, String)> {
    basic_credentials(headers).or_else(|| Some((id.clone()?, secret.clone()?)))
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
