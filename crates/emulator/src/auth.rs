//! Who is calling the emulated core: bearer tokens configured up front or issued by the OAuth 2.0
//! endpoints (client credentials; the authorization code flow with refresh tokens, as the
//! operator's identity provider runs it), each with its kind and scopes.

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
    /// The client a user token was issued to (through a subscriber's consent).
    client_id: Option<String>,
}

/// A subscriber's consent to a client, as an authorization code or a refresh token carries it.
#[derive(Debug, Clone)]
struct Consent {
    client_id: String,
    msisdn: Msisdn,
    scopes: Vec<String>,
}

/// An authorization code waiting to be exchanged (once, within [`CODE_LIFETIME`]).
#[derive(Debug, Clone)]
struct PendingCode {
    consent: Consent,
    redirect_uri: String,
    expires_at: Instant,
}

/// How long an authorization code may wait for its exchange.
const CODE_LIFETIME: Duration = Duration::from_secs(60);

/// Scopes of the identity provider itself, granted to any client a subscriber consents to.
const OPENID_SCOPES: [&str; 3] = ["openid", "phone", "offline_access"];

/// Who a user token stands for, as `/userinfo` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// The subscriber.
    pub msisdn: Msisdn,
    /// The client the token was issued to.
    pub client_id: String,
    /// Whether the `phone` scope was granted (only then is the number told).
    pub phone_scope: bool,
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
    /// A refresh token (user tokens with `offline_access`).
    pub refresh_token: Option<String>,
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
    /// An authorization code or refresh token that is unknown, used, expired, revoked, or
    /// issued to another client or redirect URI.
    #[error("invalid_grant")]
    InvalidGrant,
}

/// Checks tokens on every call and issues client-credentials tokens.
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    clients: Vec<OAuthClient>,
    grants: Mutex<HashMap<String, TokenGrant>>,
    codes: Mutex<HashMap<String, PendingCode>>,
    refresh_tokens: Mutex<HashMap<String, Consent>>,
    /// Refresh grants honoured, for tests watching a client keep its tokens fresh.
    refreshes: std::sync::atomic::AtomicU64,
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
                    client_id: None,
                };
                (token.token.clone(), grant)
            })
            .collect();
        Self {
            mode: config.mode,
            clients: config.clients.clone(),
            grants: Mutex::new(grants),
            codes: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
            refreshes: std::sync::atomic::AtomicU64::new(0),
        }
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

    /// The client `client_id` (no secret checked: the authorization endpoint is public),
    /// when `redirect_uri` is one it registered (any, when it registered none).
    pub fn public_client(&self, client_id: &str, redirect_uri: &str) -> Result<&OAuthClient, OAuthError> {
        let client =
            self.clients.iter().find(|client| client.client_id == client_id).ok_or(OAuthError::InvalidClient)?;
        match client.redirect_uris.is_empty() || client.redirect_uris.iter().any(|uri| uri == redirect_uri) {
            true => Ok(client),
            false => Err(OAuthError::InvalidRequest),
        }
    }

    /// `msisdn` consented to `client_id` having `scope`: an authorization code for it, to be
    /// exchanged once with the same `redirect_uri`.
    pub fn grant_code(
        &self,
        client_id: &str,
        redirect_uri: &str,
        msisdn: Msisdn,
        scope: &str,
    ) -> Result<(String, String), OAuthError> {
        let client = self.public_client(client_id, redirect_uri)?;
        let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
        let allowed = |asked: &String| client.scopes.contains(asked) || OPENID_SCOPES.contains(&asked.as_str());
        if scopes.is_empty() || !scopes.iter().all(allowed) {
            return Err(OAuthError::InvalidScope);
        }
        let code = random_token();
        let consent = Consent { client_id: client_id.to_owned(), msisdn, scopes: scopes.clone() };
        let pending =
            PendingCode { consent, redirect_uri: redirect_uri.to_owned(), expires_at: Instant::now() + CODE_LIFETIME };
        self.codes.lock().insert(code.clone(), pending);
        Ok((code, scopes.join(" ")))
    }

    /// The client `client_id`, when `client_secret` is its secret.
    fn authenticated_client(&self, client_id: &str, client_secret: &str) -> Result<&OAuthClient, OAuthError> {
        self.clients
            .iter()
            .find(|client| client.client_id == client_id && constant_time_eq(&client.client_secret, client_secret))
            .ok_or(OAuthError::InvalidClient)
    }

    /// The token endpoint: checks the client, then issues by `grant`.
    pub fn issue(&self, client_id: &str, client_secret: &str, grant: Grant<'_>) -> Result<IssuedToken, OAuthError> {
        let client = self.authenticated_client(client_id, client_secret)?;
        let scope = match grant {
            Grant::ClientCredentials { scope } => scope,
            Grant::AuthorizationCode { code, redirect_uri } => {
                let pending = self.codes.lock().remove(code).ok_or(OAuthError::InvalidGrant)?;
                let valid = pending.expires_at > Instant::now()
                    && pending.consent.client_id == client.client_id
                    && pending.redirect_uri == redirect_uri;
                return match valid {
                    true => Ok(self.issue_user_token(client, pending.consent)),
                    false => Err(OAuthError::InvalidGrant),
                };
            }
            Grant::RefreshToken { refresh_token } => {
                // Rotated, as the operator's provider does: the old refresh token is spent.
                let mut refresh_tokens = self.refresh_tokens.lock();
                return match refresh_tokens.remove(refresh_token) {
                    Some(consent) if consent.client_id == client.client_id => {
                        drop(refresh_tokens);
                        self.refreshes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Ok(self.issue_user_token(client, consent))
                    }
                    Some(consent) => {
                        refresh_tokens.insert(refresh_token.to_owned(), consent);
                        Err(OAuthError::InvalidGrant)
                    }
                    None => Err(OAuthError::InvalidGrant),
                };
            }
            Grant::Other => return Err(OAuthError::UnsupportedGrantType),
        };
        let scopes: Vec<String> = match scope {
            Some(scope) => scope.split_whitespace().map(str::to_owned).collect(),
            None => client.scopes.clone(),
        };
        if scopes.is_empty() || !scopes.iter().all(|asked| client.scopes.contains(asked)) {
            return Err(OAuthError::InvalidScope);
        }
        let access_token = random_token();
        let issued = IssuedToken {
            access_token: access_token.clone(),
            expires_in: client.token_lifetime,
            scope: scopes.join(" "),
            refresh_token: None,
        };
        self.grants().insert(
            access_token,
            TokenGrant {
                kind: TokenKind::Client,
                msisdn: None,
                scopes,
                expires_at: Some(Instant::now() + client.token_lifetime),
                client_id: Some(client.client_id.clone()),
            },
        );
        Ok(issued)
    }

    /// A user token for `consent`, with a refresh token when `offline_access` was granted.
    fn issue_user_token(&self, client: &OAuthClient, consent: Consent) -> IssuedToken {
        let access_token = random_token();
        let refresh_token = consent.scopes.iter().any(|scope| scope == "offline_access").then(random_token);
        if let Some(refresh_token) = &refresh_token {
            self.refresh_tokens.lock().insert(refresh_token.clone(), consent.clone());
        }
        self.grants().insert(
            access_token.clone(),
            TokenGrant {
                kind: TokenKind::User,
                msisdn: Some(consent.msisdn),
                scopes: consent.scopes.clone(),
                expires_at: Some(Instant::now() + client.token_lifetime),
                client_id: Some(consent.client_id),
            },
        );
        IssuedToken { access_token, expires_in: client.token_lifetime, scope: consent.scopes.join(" "), refresh_token }
    }

    /// Who the user token `access_token` stands for, while it is valid.
    pub fn user_info(&self, access_token: &str) -> Option<UserInfo> {
        let grant = self.grants().get(access_token).cloned()?;
        if grant.kind != TokenKind::User || grant.expires_at.is_some_and(|at| at <= Instant::now()) {
            return None;
        }
        Some(UserInfo {
            msisdn: grant.msisdn?,
            client_id: grant.client_id.unwrap_or_default(),
            phone_scope: grant.scopes.iter().any(|scope| scope == "phone"),
        })
    }

    /// RFC 7009: forgets `token` (access or refresh) if `client_id` holds it; unknown tokens
    /// are no error.
    pub fn revoke_token(&self, client_id: &str, client_secret: &str, token: &str) -> Result<(), OAuthError> {
        self.authenticated_client(client_id, client_secret)?;
        let mut refresh_tokens = self.refresh_tokens.lock();
        if refresh_tokens.get(token).is_some_and(|consent| consent.client_id == client_id) {
            refresh_tokens.remove(token);
        }
        let mut grants = self.grants();
        if grants.get(token).is_some_and(|grant| grant.client_id.as_deref() == Some(client_id)) {
            grants.remove(token);
        }
        Ok(())
    }

    /// The subscriber withdrew consent from `client_id` (at the operator's pages): every code,
    /// refresh token and access token of that consent is gone. Returns how many.
    pub fn revoke_consent(&self, msisdn: &Msisdn, client_id: &str) -> usize {
        let of_consent = |consent: &Consent| &consent.msisdn == msisdn && consent.client_id == client_id;
        let mut removed = 0;
        let mut codes = self.codes.lock();
        let before = codes.len();
        codes.retain(|_, pending| !of_consent(&pending.consent));
        removed += before - codes.len();
        let mut refresh_tokens = self.refresh_tokens.lock();
        let before = refresh_tokens.len();
        refresh_tokens.retain(|_, consent| !of_consent(consent));
        removed += before - refresh_tokens.len();
        let mut grants = self.grants();
        let before = grants.len();
        grants.retain(|_, grant| {
            !(grant.kind == TokenKind::User
                && grant.msisdn.as_ref() == Some(msisdn)
                && grant.client_id.as_deref() == Some(client_id))
        });
        removed + before - grants.len()
    }

    /// Forgets every issued token, as an identity provider that rotated its keys would: callers
    /// then get UNAUTHENTICATED and must fetch a new token.
    pub fn revoke_issued_tokens(&self) -> usize {
        let mut grants = self.grants();
        let before = grants.len();
        grants.retain(|_, grant| grant.expires_at.is_none());
        before - grants.len()
    }

    /// How many refresh grants were honoured.
    pub fn refresh_count(&self) -> u64 {
        self.refreshes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many tokens the OAuth endpoint has issued that are still held.
    pub fn issued_token_count(&self) -> usize {
        self.grants().values().filter(|grant| grant.expires_at.is_some()).count()
    }
}

/// What the token endpoint is asked for.
#[derive(Debug, Clone, Copy)]
pub enum Grant<'a> {
    /// `client_credentials`, with the scopes asked (else the client's).
    ClientCredentials {
        /// `scope`.
        scope: Option<&'a str>,
    },
    /// `authorization_code`: the code and the redirect URI it was granted for.
    AuthorizationCode {
        /// `code`.
        code: &'a str,
        /// `redirect_uri`.
        redirect_uri: &'a str,
    },
    /// `refresh_token`.
    RefreshToken {
        /// `refresh_token`.
        refresh_token: &'a str,
    },
    /// Any other grant type.
    Other,
}

/// 32 random bytes, base64url: an access token, a refresh token or a code.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
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
                redirect_uris: Vec::new(),
                client_id: "id".into(),
                client_secret: "secret".into(),
                scopes: vec!["call.routing:write".into()],
                token_lifetime: Duration::from_secs(60),
            }],
        };
        let auth = Authenticator::new(&config);
        let credentials = |scope| Grant::ClientCredentials { scope };
        assert_eq!(auth.issue("id", "wrong", credentials(None)).unwrap_err(), OAuthError::InvalidClient);
        assert_eq!(auth.issue("id", "secret", Grant::Other).unwrap_err(), OAuthError::UnsupportedGrantType);
        assert_eq!(auth.issue("id", "secret", credentials(Some("admin"))).unwrap_err(), OAuthError::InvalidScope);
        let issued = auth.issue("id", "secret", credentials(Some("call.routing:write"))).unwrap();
        assert_eq!(issued.refresh_token, None);
        let header = format!("Bearer {}", issued.access_token);
        assert_eq!(auth.authorize(&metadata(&header), "call.routing:write").ok(), Some(Principal::Client));
        assert_eq!(auth.revoke_issued_tokens(), 1);
        assert_eq!(
            auth.authorize(&metadata(&header), "call.routing:write").unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    fn code_flow_auth() -> Authenticator {
        Authenticator::new(&CoreAuthConfig {
            mode: AuthMode::Required,
            tokens: vec![],
            clients: vec![OAuthClient {
                client_id: "id".into(),
                client_secret: "secret".into(),
                scopes: vec!["call.routing:write".into()],
                token_lifetime: Duration::from_secs(60),
                redirect_uris: vec!["https://tas.example/cb".into()],
            }],
        })
    }

    #[test]
    fn authorization_code_then_rotated_refresh_tokens_until_consent_is_revoked() {
        let auth = code_flow_auth();
        let owner = Msisdn::parse("+4799990001").unwrap();
        let scope = "phone offline_access call.routing:write";
        let cb = "https://tas.example/cb";
        assert_eq!(
            auth.grant_code("id", "https://evil.example/cb", owner.clone(), scope),
            Err(OAuthError::InvalidRequest)
        );
        assert_eq!(auth.grant_code("id", cb, owner.clone(), "phone admin"), Err(OAuthError::InvalidScope));
        let (code, granted) = auth.grant_code("id", cb, owner.clone(), scope).unwrap();
        assert_eq!(granted, scope);
        let exchange = |code: &str, redirect_uri: &str| {
            auth.issue("id", "secret", Grant::AuthorizationCode { code, redirect_uri })
        };
        assert_eq!(exchange(&code, "https://tas.example/other").unwrap_err(), OAuthError::InvalidGrant);
        let (code, _) = auth.grant_code("id", cb, owner.clone(), scope).unwrap();
        let issued = exchange(&code, cb).unwrap();
        assert_eq!(exchange(&code, cb).unwrap_err(), OAuthError::InvalidGrant, "a code is used once");
        let header = format!("Bearer {}", issued.access_token);
        assert_eq!(auth.authorize(&metadata(&header), "call.routing:write").ok(), Some(Principal::User(owner.clone())));
        let info = auth.user_info(&issued.access_token).unwrap();
        assert_eq!((info.msisdn.clone(), info.client_id.as_str(), info.phone_scope), (owner.clone(), "id", true));

        let refresh = issued.refresh_token.unwrap();
        let renewed = auth.issue("id", "secret", Grant::RefreshToken { refresh_token: &refresh }).unwrap();
        assert_eq!(
            auth.issue("id", "secret", Grant::RefreshToken { refresh_token: &refresh }).unwrap_err(),
            OAuthError::InvalidGrant,
            "rotated: the old refresh token is spent"
        );
        assert!(auth.revoke_consent(&owner, "id") >= 2);
        let next = renewed.refresh_token.unwrap();
        assert_eq!(
            auth.issue("id", "secret", Grant::RefreshToken { refresh_token: &next }).unwrap_err(),
            OAuthError::InvalidGrant
        );
        assert_eq!(auth.user_info(&renewed.access_token), None, "access tokens go with the consent");
    }
}
