//! Sign-up through the operator's consent: the OAuth 2.0 authorization code flow the operator's
//! SIP Breakout pages describe. A subscriber opens `/signup` on ringer's HTTP listener and
//! presses "Enable"; ringer sends the browser to the operator's authorization endpoint (scopes
//! `phone offline_access` and the API scope, a random `state` bound to the browser by a
//! cookie), takes the code on `/signup/callback`, exchanges it for an access and a refresh
//! token, reads the number from userinfo, keeps the tokens sealed in the database
//! (AES-256-GCM under `signup.token_key_env`), and adds the subscriber, who is then registered
//! with their own token and no `phone_number`. Tokens are refreshed before they expire, by one
//! instance at a time; a refresh the provider refuses (consent withdrawn) removes the
//! subscriber and their registration, and says so in the log and in `GET /api/v1/signups`.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use ring::aead;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use domain::types::Msisdn;
use registrar::auth::{secret_from_env, AuthError, Secret};
use registrar::UserTokens;
use store::{ConsentRow, Store, StoreError, SubscriberRow, CONSENT_ACTIVE};

use crate::config::SignupConfig;
use crate::html::{cookie, escape, page, set_cookie};
use crate::leases::{duration_millis, from_millis};
use crate::mailbox::api::{authorize_admin, random_hex, ApiError};

/// The cookie binding a sign-up's `state` to the browser that started it.
const STATE_COOKIE: &str = "ringer_signup_state";
/// How long an instance holds a claimed refresh before another may try.
const REFRESH_HOLD: Duration = Duration::from_secs(20);
/// The most refreshes one instance claims per poll.
const REFRESH_BATCH: i64 = 100;
/// How far back each look at the consents reaches before the newest change already seen.
const FOLLOW_OVERLAP_MS: i64 = 60_000;
/// The longest any call to the identity provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why sign-up could not start.
#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    /// The client secret is not set.
    #[error("signup.client_secret_env: {0}")]
    Secret(#[source] AuthError),
    /// The sealing key is not set, not base64, or not 32 bytes.
    #[error("signup.token_key_env: {0}")]
    Key(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Why a step of the flow failed; shown to the subscriber as a page, logged without secrets.
#[derive(Debug, thiserror::Error)]
enum FlowError {
    /// The identity provider could not be reached.
    #[error("the operator's identity provider could not be reached: {0}")]
    Transport(String),
    /// The identity provider refused (its OAuth error code).
    #[error("the operator's identity provider refused: HTTP {status} {error}")]
    Refused { status: u16, error: String },
    /// An answer without what the flow needs.
    #[error("the operator's identity provider answered without {0}")]
    Incomplete(&'static str),
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// Sealing failed (the system's random source).
    #[error("tokens could not be sealed")]
    Seal,
}

impl FlowError {
    /// Whether the provider no longer honours the grant (the consent is gone).
    fn is_invalid_grant(&self) -> bool {
        matches!(self, FlowError::Refused { status: 400 | 401, error } if error == "invalid_grant")
    }
}

/// The token endpoint's answer.
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
    scope: Option<String>,
}

/// The userinfo endpoint's answer.
#[derive(Debug, Deserialize)]
struct UserInfoAnswer {
    phone_number: Option<String>,
}

/// Tokens sealed with AES-256-GCM, the subscriber's number as associated data (a sealed token
/// moved to another row does not open).
struct TokenSeal {
    key: aead::LessSafeKey,
    random: SystemRandom,
}

impl TokenSeal {
    fn from_env(variable: &str) -> Result<Self, SignupError> {
        let text = std::env::var(variable)
            .map_err(|_| SignupError::Key(format!("environment variable {variable} is not set")))?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|_| {
            SignupError::Key(format!("{variable} is not base64 (make one with `openssl rand -base64 32`)"))
        })?;
        let key = aead::UnboundKey::new(&aead::AES_256_GCM, &bytes)
            .map_err(|_| SignupError::Key(format!("{variable} must hold 32 bytes, it holds {}", bytes.len())))?;
        Ok(Self { key: aead::LessSafeKey::new(key), random: SystemRandom::new() })
    }

    fn seal(&self, subscriber: &Msisdn, token: &str) -> Result<String, FlowError> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| FlowError::Seal)?;
        let mut sealed = token.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(subscriber.as_str().as_bytes()),
                &mut sealed,
            )
            .map_err(|_| FlowError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// The token, or `None` when it does not open (another key, another row, tampered).
    fn open(&self, subscriber: &Msisdn, sealed: &str) -> Option<Secret> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(sealed).ok()?;
        let (nonce, _) = bytes.split_first_chunk::<{ aead::NONCE_LEN }>()?;
        let mut sealed = bytes[aead::NONCE_LEN..].to_vec();
        let nonce = aead::Nonce::assume_unique_for_key(*nonce);
        let plain = self.key.open_in_place(nonce, aead::Aad::from(subscriber.as_str().as_bytes()), &mut sealed).ok()?;
        String::from_utf8(plain.to_vec()).ok().map(Secret::new)
    }
}

/// The client secret and the sealing key `config` names, from the environment.
fn secrets_of(config: &SignupConfig) -> Result<(Secret, TokenSeal), SignupError> {
    let secret = secret_from_env(&config.client_secret_env).map_err(SignupError::Secret)?;
    Ok((secret, TokenSeal::from_env(&config.token_key_env)?))
}

/// Checks, without starting anything, that the secrets `config` names are in the environment
/// and usable (the key 32 bytes of base64), as [`Signup::new`] will need them.
pub fn check_environment(config: &SignupConfig) -> Result<(), SignupError> {
    secrets_of(config).map(drop)
}

/// Sign-up and the tokens it keeps; cheap to clone.
#[derive(Clone)]
pub struct Signup(std::sync::Arc<Inner>);

struct Inner {
    config: SignupConfig,
    secret: Secret,
    seal: TokenSeal,
    http: reqwest::Client,
    store: Store,
    tokens: UserTokens,
}

impl Signup {
    /// Sign-up as `config` says, over `store`, keeping `tokens` (the registration client's)
    /// current.
    pub fn new(config: &SignupConfig, store: Store, tokens: UserTokens) -> Result<Self, SignupError> {
        tls::install_crypto_provider();
        let (secret, seal) = secrets_of(config)?;
        // The provider's redirects are for browsers; a client following them would hide errors.
        let http =
            reqwest::Client::builder().timeout(PROVIDER_TIMEOUT).redirect(reqwest::redirect::Policy::none()).build()?;
        Ok(Self(std::sync::Arc::new(Inner { config: config.clone(), secret, seal, http, store, tokens })))
    }

    /// The sign-up pages and the status view.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/signup", get(signup_page))
            .route("/signup/start", get(start))
            .route("/signup/callback", get(callback))
            .route("/api/v1/signups", get(status))
            .with_state(self.clone())
    }

    /// Reads every active consent into the token table: before the registrar starts, so the
    /// first registrations already go out with the subscribers' own tokens. Returns the time
    /// of the newest change read (ms since the epoch).
    pub async fn load(&self) -> Result<i64, StoreError> {
        self.follow(0).await
    }

    /// Applies consents changed after `since_ms` to the token table; the newest change's time.
    /// A minute before it is read again: a change stamped by a slower clock, or committed late,
    /// is still seen (applying one twice does no harm).
    async fn follow(&self, since_ms: i64) -> Result<i64, StoreError> {
        let mut newest = since_ms;
        for row in self.0.store.consents_changed_since(since_ms.saturating_sub(FOLLOW_OVERLAP_MS)).await? {
            newest = newest.max(row.updated_ms);
            let Ok(number) = Msisdn::parse(&row.subscriber) else { continue };
            match (row.state == CONSENT_ACTIVE).then(|| self.0.seal.open(&number, &row.access_token)).flatten() {
                Some(token) => self.0.tokens.set(number, token),
                None => {
                    if row.state == CONSENT_ACTIVE {
                        warn!(subscriber = %number, "a stored token does not open with signup.token_key_env: not registered");
                    }
                    // Never registered with other credentials instead: the consent was for this token.
                    self.0.tokens.withdraw(number);
                }
            }
        }
        Ok(newest)
    }

    /// Refreshes tokens before they expire and follows other instances' changes, every
    /// `signup.poll_interval`, until the task is dropped.
    pub fn spawn_refresher(self, mut since_ms: i64) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(self.0.config.poll_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                self.refresh_due().await;
                match self.follow(since_ms).await {
                    Ok(newest) => since_ms = newest,
                    Err(error) => warn!(%error, "consents not readable; tokens kept as they are"),
                }
            }
        })
    }

    async fn refresh_due(&self) {
        let now = store::now_millis();
        let hold = duration_millis(REFRESH_HOLD);
        let due = match self.0.store.claim_due_consents(now, hold, REFRESH_BATCH).await {
            Ok(due) => due,
            Err(error) => return warn!(%error, "consents due for a refresh not readable"),
        };
        // A refresh starts only while the claim outlasts it: once the claim ends another instance
        // may take the row, and two refreshes of one token would cost the consent.
        let last_start = now.saturating_add(hold).saturating_sub(duration_millis(PROVIDER_TIMEOUT));
        for row in due {
            if store::now_millis() > last_start {
                break;
            }
            let Ok(number) = Msisdn::parse(&row.subscriber) else { continue };
            let Some(refresh_token) = self.0.seal.open(&number, &row.refresh_token) else {
                warn!(subscriber = %number, "refresh token does not open with signup.token_key_env");
                continue;
            };
            let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose())];
            match self.token_request(&form).await {
                Ok(answer) => match self.keep(&number, answer, "refreshed").await {
                    Ok(()) => info!(subscriber = %number, "access token refreshed"),
                    Err(error) => warn!(subscriber = %number, %error, "refreshed token not kept"),
                },
                Err(error) if error.is_invalid_grant() => {
                    // Refused: unless another instance refreshed it meanwhile, the consent is gone.
                    match self.0.store.consent(number.as_str()).await {
                        Ok(Some(current)) if current.refresh_token != row.refresh_token => {
                            info!(subscriber = %number, "refreshed by another instance meanwhile")
                        }
                        _ => self.withdrawn(&number, &error).await,
                    }
                }
                // Transport trouble: the claim lapses and the next poll tries again.
                Err(error) => warn!(subscriber = %number, %error, "token refresh failed; trying again"),
            }
        }
    }

    /// The provider no longer honours the consent: the subscriber is removed (and with it the
    /// registration), the consent kept as withdrawn for the status view.
    async fn withdrawn(&self, number: &Msisdn, why: &FlowError) {
        warn!(subscriber = %number, %why, "consent withdrawn: removing the subscriber and its registration");
        // The subscriber goes first; the token marked withdrawn keeps the registrar from
        // registering it again with other credentials meanwhile (or if the removal failed).
        if let Err(error) = self.0.store.remove_subscriber(number).await {
            warn!(subscriber = %number, %error, "subscriber of a withdrawn consent not removed");
        }
        self.0.tokens.withdraw(number.clone());
        let note = format!("consent withdrawn: refresh refused ({why})");
        if let Err(error) = self.0.store.revoke_consent(number.as_str(), &note).await {
            warn!(subscriber = %number, %error, "withdrawn consent not recorded");
        }
    }

    /// POSTs `form` to the token endpoint with the client's Basic credentials.
    async fn token_request(&self, form: &[(&str, &str)]) -> Result<TokenAnswer, FlowError> {
        let config = &self.0.config;
        let response = self
            .0
            .http
            .post(&config.token_url)
            .basic_auth(form_encode(&config.client_id), Some(form_encode(self.0.secret.expose())))
            .form(form)
            .send()
            .await
            .map_err(|error| FlowError::Transport(error.without_url().to_string()))?;
        let status = response.status().as_u16();
        if !response.status().is_success() {
            #[derive(Deserialize)]
            struct ErrorAnswer {
                error: Option<String>,
            }
            let error = response.json::<ErrorAnswer>().await.ok().and_then(|answer| answer.error).unwrap_or_default();
            return Err(FlowError::Refused { status, error });
        }
        response.json().await.map_err(|_| FlowError::Incomplete("a JSON token answer"))
    }

    /// Seals and stores `answer`'s tokens as `number`'s, and puts the access token in use.
    async fn keep(&self, number: &Msisdn, answer: TokenAnswer, note: &str) -> Result<(), FlowError> {
        let access = answer.access_token.ok_or(FlowError::Incomplete("access_token"))?;
        let refresh = answer.refresh_token.ok_or(FlowError::Incomplete("refresh_token (scope offline_access)"))?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600).max(1));
        let now = store::now_millis();
        let row = ConsentRow {
            subscriber: number.to_string(),
            access_token: self.0.seal.seal(number, &access)?,
            refresh_token: self.0.seal.seal(number, &refresh)?,
            scope: answer.scope.unwrap_or_default(),
            expires_ms: now.saturating_add(duration_millis(lifetime)),
            // Two thirds into its life: room for a provider that is slow or down a while.
            refresh_at_ms: now.saturating_add(duration_millis(lifetime * 2 / 3)),
            state: CONSENT_ACTIVE.into(),
            note: note.into(),
            updated_ms: now,
        };
        self.0.store.put_consent(&row).await?;
        self.0.tokens.set(number.clone(), Secret::new(access));
        Ok(())
    }

    /// The number the access token belongs to, from userinfo.
    async fn number_of(&self, access_token: &str) -> Result<Msisdn, FlowError> {
        let response = self
            .0
            .http
            .get(&self.0.config.userinfo_url)
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|error| FlowError::Transport(error.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(FlowError::Refused { status: response.status().as_u16(), error: "userinfo".into() });
        }
        let info: UserInfoAnswer = response.json().await.map_err(|_| FlowError::Incomplete("a JSON userinfo"))?;
        let number = info.phone_number.ok_or(FlowError::Incomplete("phone_number (scope phone)"))?;
        Msisdn::parse(&number).map_err(|_| FlowError::Incomplete("an E.164 phone_number"))
    }

    /// The subscriber's row as sign-up creates it (their settings stay the defaults).
    fn subscriber_row(&self, number: &Msisdn) -> SubscriberRow {
        let config = &self.0.config;
        SubscriberRow {
            phone_number: number.clone(),
            route_type: config.route_type,
            mo_prefix: config.mo_prefix.clone(),
            mt_prefix: config.mt_prefix.clone(),
            mo_behaviour: None,
            mt_behaviour: None,
        }
    }
}

/// `GET /signup`.
async fn signup_page() -> Response {
    page(
        StatusCode::OK,
        "Voicemail and call forwarding",
        "<p>Enable the service for your mobile number. Your operator asks you to log in and to \
         agree first.</p><p><a class=button id=enable href=/signup/start>Enable</a></p>",
    )
}

/// `GET /signup/start`: to the authorization endpoint, with a fresh `state` in a cookie.
async fn start(State(signup): State<Signup>) -> Response {
    let Ok(state) = random_hex(24) else {
        return page(StatusCode::SERVICE_UNAVAILABLE, "Try again", "<p>No random source; try again.</p>");
    };
    let config = &signup.0.config;
    let scope = format!("phone offline_access {}", config.scope);
    let separator = if config.authorize_url.contains('?') { '&' } else { '?' };
    let location = format!(
        "{}{separator}response_type=code&client_id={}&redirect_uri={}&scope={}&state={state}",
        config.authorize_url,
        form_encode(&config.client_id),
        form_encode(&config.redirect_uri),
        form_encode(&scope),
    );
    let secure = if config.redirect_uri.starts_with("https://") { "; Secure" } else { "" };
    let cookie = format!("{STATE_COOKIE}={state}; Path=/signup; Max-Age=600; HttpOnly; SameSite=Lax{secure}");
    let mut response = Redirect::to(&location).into_response();
    set_cookie(&mut response, &cookie);
    response
}

/// The query the authorization endpoint sends the browser back with.
#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /signup/callback`: the code exchanged, the subscriber added and registered.
async fn callback(State(signup): State<Signup>, headers: HeaderMap, Query(query): Query<CallbackQuery>) -> Response {
    let expected = cookie(&headers, STATE_COOKIE);
    let matches = match (&expected, &query.state) {
        (Some(expected), Some(got)) => constant_time_eq(expected.as_bytes(), got.as_bytes()),
        _ => false,
    };
    if !matches {
        warn!(cookie = expected.is_some(), "sign-up callback refused: state does not match this browser's");
        return page(
            StatusCode::BAD_REQUEST,
            "Not enabled",
            "<p id=error>This answer does not belong to a sign-up this browser started (state mismatch). \
             Please start again from <a href=/signup>the sign-up page</a>.</p>",
        );
    }
    let clear = format!("{STATE_COOKIE}=; Path=/signup; Max-Age=0");
    let mut response = match (&query.error, &query.code) {
        (Some(error), _) => {
            info!(%error, "sign-up: the subscriber did not grant access");
            page(
                StatusCode::FORBIDDEN,
                "Not enabled",
                &format!("<p id=error>Access was not granted ({}).</p>", escape(error)),
            )
        }
        (None, Some(code)) => match enable(&signup, code).await {
            Ok(number) => page(
                StatusCode::OK,
                "Enabled",
                &format!("<p id=enabled>The service is now on for <span id=number>{number}</span>.</p>"),
            ),
            Err(error) => {
                warn!(%error, "sign-up failed");
                page(StatusCode::BAD_GATEWAY, "Not enabled", &format!("<p id=error>{}</p>", escape(&error.to_string())))
            }
        },
        (None, None) => page(StatusCode::BAD_REQUEST, "Not enabled", "<p id=error>No code came back.</p>"),
    };
    set_cookie(&mut response, &clear);
    response
}

/// Exchanges `code`, learns the number, keeps the tokens and adds the subscriber.
async fn enable(signup: &Signup, code: &str) -> Result<Msisdn, FlowError> {
    let config = &signup.0.config;
    let form = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", config.redirect_uri.as_str())];
    let answer = signup.token_request(&form).await?;
    let access = answer.access_token.clone().ok_or(FlowError::Incomplete("access_token"))?;
    let number = signup.number_of(&access).await?;
    signup.keep(&number, answer, "signed up").await?;
    let store = &signup.0.store;
    if store.subscriber(&number).await?.is_none() {
        store.put_subscriber(&signup.subscriber_row(&number)).await?;
    }
    info!(subscriber = %number, route_type = %config.route_type, "signed up through the operator's consent");
    Ok(number)
}

/// One consent as `GET /api/v1/signups` shows it.
#[derive(Debug, Serialize)]
struct ConsentView {
    subscriber: String,
    state: String,
    scope: String,
    expires_at: Option<String>,
    note: String,
}

/// `GET /api/v1/signups` (admin token): every consent and how it stands.
async fn status(State(signup): State<Signup>, headers: HeaderMap) -> Result<Json<Vec<ConsentView>>, ApiError> {
    authorize_admin(&signup.0.store, &headers).await?;
    let rows = signup.0.store.consents().await?;
    Ok(Json(
        rows.into_iter()
            .map(|row| ConsentView {
                expires_at: (row.state == CONSENT_ACTIVE)
                    .then(|| humantime::format_rfc3339_seconds(from_millis(row.expires_ms)).to_string()),
                subscriber: row.subscriber,
                state: row.state,
                scope: row.scope,
                note: row.note,
            })
            .collect(),
    ))
}

/// `text` form-urlencoded.
fn form_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Compares without an early exit that would tell, by its timing, how much of a guess is right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal() -> TokenSeal {
        let key = aead::UnboundKey::new(&aead::AES_256_GCM, &[7u8; 32]).unwrap();
        TokenSeal { key: aead::LessSafeKey::new(key), random: SystemRandom::new() }
    }

    #[test]
    fn sealed_tokens_open_only_for_their_subscriber_and_key() {
        let owner = Msisdn::parse("+4799990001").unwrap();
        let other = Msisdn::parse("+4799990002").unwrap();
        let sealed = seal().seal(&owner, "access-token").unwrap();
        assert!(!sealed.contains("access-token"));
        assert_eq!(seal().open(&owner, &sealed).map(|s| s.expose().to_owned()).as_deref(), Some("access-token"));
        assert!(seal().open(&other, &sealed).is_none(), "moved to another row");
        let key = aead::UnboundKey::new(&aead::AES_256_GCM, &[8u8; 32]).unwrap();
        let other_key = TokenSeal { key: aead::LessSafeKey::new(key), random: SystemRandom::new() };
        assert!(other_key.open(&owner, &sealed).is_none(), "another key");
        assert!(seal().open(&owner, "bm90IHNlYWxlZA==").is_none());
        assert!(seal().open(&owner, "%%%").is_none());
        assert_ne!(seal().seal(&owner, "t").unwrap(), seal().seal(&owner, "t").unwrap(), "a fresh nonce each time");
    }
}
