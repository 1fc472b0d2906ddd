//! Who is calling the emulated core: bearer tokens configured up front or issued by the OAuth 2.0
//! client-credentials endpoint, each with its kind and scopes.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use parking_lot::{Mutex, MutexGuard};
use rand::RngCore;
use tokio::time::Instant;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::config::{AuthMode, CoreAuthConfig, OAuthClient, TokenKind};
use domain::types::Msisdn;

/// The authenticated caller of one gRPC call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No token, allowed in sandbox mode; must name the phone number like a client.
    Anonymous,
    /// A client-credentials token: acts for many subscribers, must name each.
    Client,
    /// A user's token: acts on its own subscription only.
    User(Msisdn),
}

#[derive(Debug, Clone)]
struct TokenGrant {
    kind: TokenKind,
    msisdn: Option<Msisdn>,
    scopes: Vec<String>,
    expires_at: Option<Instant>,
}

/// A token the OAuth endpoint issued.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The bearer token.
    pub access_token: String,
    /// Its lifetime.
    pub expires_in: Duration,
    /// The scopes granted, space-separated.
    pub scope: String,
}

/// Why the token endpoint refused (RFC 6749 §5.2 error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// Unknown client or wrong secret.
    #[error("invalid_client")]
    InvalidClient,
    /// A grant type other than client_credentials.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// A scope the client may not have.
    #[error("invalid_scope")]
    InvalidScope,
    /// The request lacks a required parameter.
    #[error("invalid_request")]
    InvalidRequest,
}

/// Checks tokens on every call and issues client-credentials tokens.
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    clients: Vec<OAuthClient>,
    grants: Mutex<HashMap<String, TokenGrant>>,
}

impl Authenticator {
    /// Builds the token table from the config.
    pub fn new(config: &CoreAuthConfig) -> Self {
        let grants = config
            .tokens
            .iter()
            .map(|token| {
                let grant = TokenGrant {
                    kind: token.kind,
                    msisdn: token.msisdn.clone(),
                    scopes: token.scopes.clone(),
                    expires_at: None,
                };
                (token.token.clone(), grant)
            })
            .collect();
        Self { mode: config.mode, clients: config.clients.clone(), grants: Mutex::new(grants) }
    }

    fn grants(&self) -> MutexGuard<'_, HashMap<String, TokenGrant>> {
        self.grants.lock()
    }

    /// Authenticates a call and checks that its token carries `scope`.
    pub fn authorize(&self, metadata: &MetadataMap, scope: &str) -> Result<Principal, Status> {
        let Some(header) = metadata.get("authorization") else {
            return match self.mode {
                AuthMode::Sandbox => Ok(Principal::Anonymous),
                AuthMode::Required => Err(Status::unauthenticated("missing authorization: Bearer token")),
            };
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
        let grant = self
            .grants()
            .get(token)
            .cloned()
            .ok_or_else(|| Status::unauthenticated("invalid or expired access token"))?;
        if grant.expires_at.is_some_and(|at| at <= Instant::now()) {
            return Err(Status::unauthenticated("invalid or expired access token"));
        }
        if !grant.scopes.iter().any(|granted| granted == scope) {
            return Err(Status::permission_denied(format!("token lacks scope {scope}")));
        }
        match (grant.kind, grant.msisdn) {
            (TokenKind::User, Some(msisdn)) => Ok(Principal::User(msisdn)),
            _ => Ok(Principal::Client),
        }
    }

    /// Client-credentials grant: checks the client and issues a token for the scopes asked.
    pub fn issue(
        &self,
        client_id: &str,
        client_secret: &str,
        grant_type: &str,
        scope: Option<&str>,
    ) -> Result<IssuedToken, OAuthError> {
        let client = self
            .clients
            .iter()
            .find(|client| client.client_id == client_id && constant_time_eq(&client.client_secret, client_secret))
            .ok_or(OAuthError::InvalidClient)?;
        if grant_type != "client_credentials" {
            return Err(OAuthError::UnsupportedGrantType);
        }
        let scopes: Vec<String> = match scope {
            Some(scope) => scope.split_whitespace().map(str::to_owned).collect(),
            None => client.scopes.clone(),
        };
        if scopes.is_empty() || !scopes.iter().all(|asked| client.scopes.contains(asked)) {
            return Err(OAuthError::InvalidScope);
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let access_token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let issued = IssuedToken {
            access_token: access_token.clone(),
            expires_in: client.token_lifetime,
            scope: scopes.join(" "),
        };
        self.grants().insert(
            access_token,
            TokenGrant {
                kind: TokenKind::Client,
                msisdn: None,
                scopes,
                expires_at: Some(Instant::now() + client.token_lifetime),
            },
        );
        Ok(issued)
    }

    /// Forgets every issued token, as an identity provider that rotated its keys would: callers
    /// then get UNAUTHENTICATED and must fetch a new token.
    pub fn revoke_issued_tokens(&self) -> usize {
        let mut grants = self.grants();
        let before = grants.len();
        grants.retain(|_, grant| grant.expires_at.is_none());
        before - grants.len()
    }

    /// How many tokens the OAuth endpoint has issued that are still held.
    pub fn issued_token_count(&self) -> usize {
        self.grants().values().filter(|grant| grant.expires_at.is_some()).count()
    }
}

/// Compares secrets without an early exit that would leak their common prefix through timing.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StaticToken;

    fn metadata(value: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert("authorization", value.parse().unwrap());
        map
    }

    #[test]
    fn tokens_are_checked_for_presence_and_scope() {
        let config = CoreAuthConfig {
            mode: AuthMode::Required,
            tokens: vec![
                StaticToken {
                    token: "c".into(),
                    kind: TokenKind::Client,
                    msisdn: None,
                    scopes: vec!["call.routing:write".into()],
                },
                StaticToken { token: "r".into(), kind: TokenKind::Client, msisdn: None, scopes: vec!["other".into()] },
                StaticToken {
                    token: "u".into(),
                    kind: TokenKind::User,
                    msisdn: Msisdn::parse("+471").ok(),
                    scopes: vec!["call.routing:write".into()],
                },
            ],
            clients: vec![],
        };
        let auth = Authenticator::new(&config);
        let scope = "call.routing:write";
        assert_eq!(auth.authorize(&MetadataMap::new(), scope).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(auth.authorize(&metadata("Bearer nope"), scope).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(auth.authorize(&metadata("Basic c"), scope).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(auth.authorize(&metadata("Bearer r"), scope).unwrap_err().code(), tonic::Code::PermissionDenied);
        assert_eq!(auth.authorize(&metadata("Bearer c"), scope).ok(), Some(Principal::Client));
        assert_eq!(
            auth.authorize(&metadata("bearer u"), scope).ok(),
            Some(Principal::User(Msisdn::parse("+471").unwrap()))
        );
    }

    #[test]
    fn client_credentials_grant() {
        let config = CoreAuthConfig {
            mode: AuthMode::Required,
            tokens: vec![],
            clients: vec![OAuthClient {
                client_id: "id".into(),
                client_secret: "secret".into(),
                scopes: vec!["call.routing:write".into()],
                token_lifetime: Duration::from_secs(60),
            }],
        };
        let auth = Authenticator::new(&config);
        assert_eq!(auth.issue("id", "wrong", "client_credentials", None).unwrap_err(), OAuthError::InvalidClient);
        assert_eq!(auth.issue("id", "secret", "password", None).unwrap_err(), OAuthError::UnsupportedGrantType);
        assert_eq!(
            auth.issue("id", "secret", "client_credentials", Some("admin")).unwrap_err(),
            OAuthError::InvalidScope
        );
        let issued = auth.issue("id", "secret", "client_credentials", Some("call.routing:write")).unwrap();
        let header = format!("Bearer {}", issued.access_token);
        assert_eq!(auth.authorize(&metadata(&header), "call.routing:write").ok(), Some(Principal::Client));
        assert_eq!(auth.revoke_issued_tokens(), 1);
        assert_eq!(
            auth.authorize(&metadata(&header), "call.routing:write").unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
