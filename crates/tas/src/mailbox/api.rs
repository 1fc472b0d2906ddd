//! The HTTP API for apps and visual-voicemail clients, under `/api/v1/mailboxes/{number}`:
//!
//! - `GET .../messages`: the messages (JSON), new first is up to the client;
//! - `GET .../messages/{id}/audio`: WAV, or Ogg/Opus with `?format=opus` or `Accept: audio/ogg`;
//! - `POST .../messages/{id}/heard`, `POST .../messages/{id}/save`, `DELETE .../messages/{id}`;
//! - `GET .../greetings` (the kinds recorded), `GET`/`PUT`/`DELETE .../greetings/{kind}` (the
//!   body of a `PUT` is WAV or Ogg/Opus).
//!
//! Every request carries `Authorization: Bearer <token>`; the store keeps each token's SHA-256
//! with the one mailbox it opens (or all, for an admin token): 401 without a known token, 403
//! for another mailbox's.

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use domain::types::Msisdn;
use store::{MessageState, StoreError, VoicemailRow};

use super::greeting::GreetingKind;
use super::Mailboxes;

/// The largest greeting upload (a minute of 48 kHz stereo WAV is 11 MB).
const MAX_UPLOAD: usize = 16 * 1024 * 1024;
/// The longest greeting accepted, at 8 kHz.
const MAX_GREETING_SAMPLES: usize = 8000 * 120;

/// The API's routes over `mailboxes`.
pub fn router(mailboxes: Mailboxes) -> Router {
    Router::new()
        .route("/api/v1/mailboxes/{number}/messages", get(list))
        .route("/api/v1/mailboxes/{number}/messages/{id}", axum::routing::delete(delete))
        .route("/api/v1/mailboxes/{number}/messages/{id}/audio", get(audio))
        .route("/api/v1/mailboxes/{number}/messages/{id}/heard", post(heard))
        .route("/api/v1/mailboxes/{number}/messages/{id}/save", post(save))
        .route("/api/v1/mailboxes/{number}/greetings", get(greetings))
        .route("/api/v1/mailboxes/{number}/greetings/{kind}", get(greeting).put(put_greeting).delete(delete_greeting))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
        .with_state(mailboxes)
}

/// A new API token and the hash the store keeps of it.
pub fn new_token() -> Result<(String, String), ring::error::Unspecified> {
    let token = format!("rgr_{}", random_hex(24)?);
    let hash = token_hash(&token);
    Ok((token, hash))
}

/// `bytes` random bytes from the system's source, as hex: tokens, sessions, OAuth states.
pub(crate) fn random_hex(bytes: usize) -> Result<String, ring::error::Unspecified> {
    let mut random = vec![0u8; bytes];
    SystemRandom::new().fill(&mut random)?;
    Ok(random.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// The SHA-256 of `token`, hex, as the store keeps it.
pub fn token_hash(token: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a request failed, as its status and a JSON `{"error": ...}`.
#[derive(Debug)]
pub(crate) enum ApiError {
    Unauthorized,
    Forbidden,
    NotFound(String),
    BadRequest(String),
    Internal(String),
    Store(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::Store(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            ApiError::Unauthorized => {
                let body = Json(serde_json::json!({ "error": "a bearer token is required" }));
                return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer realm=\"ringer\"")], body)
                    .into_response();
            }
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "this token does not open that mailbox".to_owned()),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, what),
            ApiError::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            ApiError::Internal(why) => {
                warn!(why, "mailbox API: internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error (logged)".to_owned())
            }
            // The database out of reach is temporary; anything else is a fault here.
            ApiError::Store(error) if error.is_unavailable() => {
                warn!(%error, "mailbox API: the store is unreachable");
                (StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable; try again".to_owned())
            }
            ApiError::Store(error) => {
                warn!(%error, "mailbox API: the store refused");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error (logged)".to_owned())
            }
        };
        (status, Json(serde_json::json!({ "error": text }))).into_response()
    }
}

/// The mailbox of the path, once the request's token opens it.
pub(crate) async fn authorize(mailboxes: &Mailboxes, headers: &HeaderMap, number: &str) -> Result<Msisdn, ApiError> {
    let row = token_row(mailboxes.store(), headers).await?;
    let text = if number.starts_with('+') { number.to_owned() } else { format!("+{number}") };
    let mailbox = Msisdn::parse(&text).map_err(|error| ApiError::BadRequest(error.to_string()))?;
    match row.mailbox {
        None => Ok(mailbox),
        Some(own) if own == mailbox.as_str() => Ok(mailbox),
        Some(_) => Err(ApiError::Forbidden),
    }
}

/// The stored token `headers` carry as `Authorization: Bearer`.
async fn token_row(store: &store::Store, headers: &HeaderMap) -> Result<store::TokenRow, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    store.token(&token_hash(token)).await?.ok_or(ApiError::Unauthorized)
}

/// Checks that `headers` carry an admin token (one that opens every mailbox).
pub(crate) async fn authorize_admin(store: &store::Store, headers: &HeaderMap) -> Result<(), ApiError> {
    match token_row(store, headers).await?.mailbox {
        None => Ok(()),
        Some(_) => Err(ApiError::Forbidden),
    }
}

/// A message as the API shows it.
#[derive(Debug, Serialize)]
struct MessageView {
    id: String,
    caller: Option<String>,
    callee: Option<String>,
    direction: Option<String>,
    recorded_at: String,
    duration_ms: u64,
    codec: String,
    partial: bool,
    state: String,
}

impl From<VoicemailRow> for MessageView {
    fn from(row: VoicemailRow) -> Self {
        MessageView {
            state: row.state.to_string(),
            id: row.id,
            caller: row.caller,
            callee: row.callee,
            direction: row.direction,
            recorded_at: row.recorded_at,
            duration_ms: row.duration_ms,
            codec: row.codec,
            partial: row.partial,
        }
    }
}

async fn list(
    State(mailboxes): State<Mailboxes>,
    Path(number): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<MessageView>>, ApiError> {
    let owner = authorize(&mailboxes, &headers, &number).await?;
    let rows = mailboxes.store().voicemails(Some(owner.as_str())).await?;
    Ok(Json(rows.into_iter().map(MessageView::from).collect()))
}

#[derive(Debug, Deserialize)]
struct AudioQuery {
    format: Option<String>,
}

async fn audio(
    State(mailboxes): State<Mailboxes>,
    Path((number, id)): Path<(String, String)>,
    Query(query): Query<AudioQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let owner = authorize(&mailboxes, &headers, &number).await?;
    let (row, wav) = match mailboxes.store().voicemail(&id).await? {
        Some((row, wav)) if row.subscriber == owner.as_str() => (row, wav),
        _ => return Err(ApiError::NotFound(format!("no message {id:?} in this mailbox"))),
    };
    super::count_fetched(&headers);
    let accepts_ogg = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("audio/ogg") && !accept.contains("audio/wav"));
    let opus = match query.format.as_deref() {
        Some("opus" | "ogg") => true,
        Some("wav") => false,
        Some(other) => return Err(ApiError::BadRequest(format!("format {other:?}: wav or opus"))),
        None => accepts_ogg,
    };
    if !opus {
        return Ok(([(header::CONTENT_TYPE, "audio/wav")], wav).into_response());
    }
    let encoded = tokio::task::spawn_blocking(move || {
        let samples = media::apps::decode_audio(&wav, std::path::Path::new(&row.id)).map_err(|e| e.to_string())?;
        media::apps::ogg_opus_bytes(&samples).map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| ApiError::Internal("the encoder stopped".into()))?;
    let ogg = encoded.map_err(|error| ApiError::Internal(format!("message {id:?} as Opus: {error}")))?;
    Ok(([(header::CONTENT_TYPE, "audio/ogg; codecs=opus")], ogg).into_response())
}

async fn change(
    mailboxes: &Mailboxes,
    headers: &HeaderMap,
    number: &str,
    id: &str,
    state: MessageState,
) -> Result<StatusCode, ApiError> {
    let owner = authorize(mailboxes, headers, number).await?;
    if !mailboxes.store().set_voicemail_state(owner.as_str(), id, state).await? {
        return Err(ApiError::NotFound(format!("no message {id:?} in this mailbox")));
    }
    info!(subscriber = %owner, %id, %state, "by the API");
    if state == MessageState::Deleted {
        super::count_message("deleted");
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn heard(
    State(mailboxes): State<Mailboxes>,
    Path((number, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    change(&mailboxes, &headers, &number, &id, MessageState::Heard).await
}

async fn save(
    State(mailboxes): State<Mailboxes>,
    Path((number, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    change(&mailboxes, &headers, &number, &id, MessageState::Saved).await
}

async fn delete(
    State(mailboxes): State<Mailboxes>,
    Path((number, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    change(&mailboxes, &headers, &number, &id, MessageState::Deleted).await
}

async fn greetings(
    State(mailboxes): State<Mailboxes>,
    Path(number): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<String>>, ApiError> {
    let owner = authorize(&mailboxes, &headers, &number).await?;
    Ok(Json(mailboxes.store().greetings(owner.as_str()).await?))
}

fn kind_of(text: &str) -> Result<GreetingKind, ApiError> {
    text.parse().map_err(ApiError::BadRequest)
}

async fn greeting(
    State(mailboxes): State<Mailboxes>,
    Path((number, kind)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let owner = authorize(&mailboxes, &headers, &number).await?;
    let kind = kind_of(&kind)?;
    match mailboxes.store().greeting(owner.as_str(), kind.as_str()).await? {
        Some(wav) => Ok(([(header::CONTENT_TYPE, "audio/wav")], wav).into_response()),
        None => Err(ApiError::NotFound(format!("no {kind} greeting recorded"))),
    }
}

async fn put_greeting(
    State(mailboxes): State<Mailboxes>,
    Path((number, kind)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let owner = authorize(&mailboxes, &headers, &number).await?;
    let kind = kind_of(&kind)?;
    store_greeting(&mailboxes, &owner, kind, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `body` (WAV or Ogg/Opus, up to two minutes) decoded and kept as `owner`'s `kind` greeting.
pub(crate) async fn store_greeting(
    mailboxes: &Mailboxes,
    owner: &Msisdn,
    kind: GreetingKind,
    body: Bytes,
) -> Result<(), ApiError> {
    // Decoding (and resampling) takes a while: off the threads that pace calls' media.
    let decoded = tokio::task::spawn_blocking(move || {
        media::apps::decode_audio_at_most(&body, std::path::Path::new("the uploaded greeting"), MAX_GREETING_SAMPLES)
    })
    .await
    .map_err(|_| ApiError::Internal("the decoder stopped".into()))?;
    let samples = decoded.map_err(|error| ApiError::BadRequest(error.to_string()))?;
    if samples.is_empty() {
        return Err(ApiError::BadRequest("the greeting is empty".into()));
    }
    mailboxes.set_greeting(owner, kind, &samples).await?;
    Ok(())
}

async fn delete_greeting(
    State(mailboxes): State<Mailboxes>,
    Path((number, kind)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let owner = authorize(&mailboxes, &headers, &number).await?;
    let kind = kind_of(&kind)?;
    match mailboxes.store().delete_greeting(owner.as_str(), kind.as_str()).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::NotFound(format!("no {kind} greeting recorded"))),
    }
}
