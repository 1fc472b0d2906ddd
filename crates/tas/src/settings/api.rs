//! The settings API: `GET` and `PUT /api/v1/subscribers/{number}/settings`, with the voicemail
//! API's tokens.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as HttpStatus};
use axum::routing::get;
use axum::{Json, Router};
use tracing::info;

use super::{SettingsError, SubscriberSettings};
use crate::mailbox::api::{authorize, ApiError};
use crate::mailbox::Mailboxes;

impl From<SettingsError> for ApiError {
    fn from(error: SettingsError) -> Self {
        match error {
            SettingsError::Store(error) => ApiError::Store(error),
            SettingsError::Unreadable(error) => ApiError::Internal(error.to_string()),
        }
    }
}

/// The settings API's routes over the mailboxes' store and tokens.
pub fn router(mailboxes: Mailboxes) -> Router {
    Router::new().route("/api/v1/subscribers/{number}/settings", get(read).put(write)).with_state(mailboxes)
}

async fn read(
    State(mailboxes): State<Mailboxes>,
    Path(number): Path<String>,
    headers: HeaderMap,
) -> Result<Json<SubscriberSettings>, ApiError> {
    let owner = authorize(&mailboxes, &headers, &number).await?;
    Ok(Json(SubscriberSettings::read(mailboxes.store(), &owner).await?))
}

async fn write(
    State(mailboxes): State<Mailboxes>,
    Path(number): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<HttpStatus, ApiError> {
    let owner = authorize(&mailboxes, &headers, &number).await?;
    let settings: SubscriberSettings =
        serde_json::from_slice(&body).map_err(|error| ApiError::BadRequest(error.to_string()))?;
    settings.check(&owner).map_err(ApiError::BadRequest)?;
    mailboxes.subscriber_settings().save(&owner, &settings).await?;
    info!(subscriber = %owner, ?settings, "settings changed by the API");
    Ok(HttpStatus::NO_CONTENT)
}
