//! Consents: subscribers who enabled the product through the operator's authorization page,
//! with their tokens as the TAS sealed them (the store never sees a token in the clear), and a
//! claim so that only one instance refreshes a token at a time (a refresh token is spent on
//! use: two instances refreshing it at once would lose the consent).

use sqlx::Row;

use crate::pool::{now_millis, Store, StoreError};

/// One consent as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRow {
    /// The subscriber's number.
    pub subscriber: String,
    /// The access token, sealed (empty once withdrawn).
    pub access_token: String,
    /// The refresh token, sealed (empty once withdrawn).
    pub refresh_token: String,
    /// The scopes granted.
    pub scope: String,
    /// When the access token expires (ms since the epoch).
    pub expires_ms: i64,
    /// When to refresh it.
    pub refresh_at_ms: i64,
    /// `active`, or `revoked` once the provider refused a refresh.
    pub state: String,
    /// What happened last, for the status view.
    pub note: String,
    /// When the row last changed.
    pub updated_ms: i64,
}

/// A consent still in use.
pub const CONSENT_ACTIVE: &str = "active";
/// A consent the provider no longer honours.
pub const CONSENT_REVOKED: &str = "revoked";

const COLUMNS: &str =
    "subscriber, access_token, refresh_token, scope, expires_ms, refresh_at_ms, state, note, updated_ms";

fn row_of(row: &sqlx::any::AnyRow) -> Result<ConsentRow, StoreError> {
    Ok(ConsentRow {
        subscriber: row.try_get(0)?,
        access_token: row.try_get(1)?,
        refresh_token: row.try_get(2)?,
        scope: row.try_get(3)?,
        expires_ms: row.try_get(4)?,
        refresh_at_ms: row.try_get(5)?,
        state: row.try_get(6)?,
        note: row.try_get(7)?,
        updated_ms: row.try_get(8)?,
    })
}

impl Store {
    /// Stores `consent` (new tokens), replacing the subscriber's earlier one and its claim.
    pub async fn put_consent(&self, consent: &ConsentRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO consents (subscriber, access_token, refresh_token, scope, expires_ms, refresh_at_ms, \
             refreshing_until_ms, state, note, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9) \
             ON CONFLICT (subscriber) DO UPDATE SET access_token = excluded.access_token, \
             refresh_token = excluded.refresh_token, scope = excluded.scope, expires_ms = excluded.expires_ms, \
             refresh_at_ms = excluded.refresh_at_ms, refreshing_until_ms = 0, state = excluded.state, \
             note = excluded.note, updated_ms = excluded.updated_ms",
        )
        .bind(&consent.subscriber)
        .bind(&consent.access_token)
        .bind(&consent.refresh_token)
        .bind(&consent.scope)
        .bind(consent.expires_ms)
        .bind(consent.refresh_at_ms)
        .bind(&consent.state)
        .bind(&consent.note)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every consent, by number.
    pub async fn consents(&self) -> Result<Vec<ConsentRow>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {COLUMNS} FROM consents ORDER BY subscriber")).fetch_all(&self.pool).await?;
        rows.iter().map(row_of).collect()
    }

    /// `subscriber`'s consent, if any.
    pub async fn consent(&self, subscriber: &str) -> Result<Option<ConsentRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM consents WHERE subscriber = $1"))
            .bind(subscriber)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_of).transpose()
    }

    /// The consents changed after `since_ms` (ms since the epoch), to follow other instances.
    pub async fn consents_changed_since(&self, since_ms: i64) -> Result<Vec<ConsentRow>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM consents WHERE updated_ms > $1 ORDER BY updated_ms"))
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_of).collect()
    }

    /// Claims the active consents due for a refresh at `now_ms` that no instance is refreshing,
    /// for `hold_ms`: each is this caller's to refresh until then. At most `limit`.
    pub async fn claim_due_consents(
        &self,
        now_ms: i64,
        hold_ms: i64,
        limit: i64,
    ) -> Result<Vec<ConsentRow>, StoreError> {
        let due = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM consents WHERE state = $1 AND refresh_at_ms <= $2 AND refreshing_until_ms < $2 \
             ORDER BY refresh_at_ms LIMIT $3"
        ))
        .bind(CONSENT_ACTIVE)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::new();
        for row in due {
            let consent = row_of(&row)?;
            // Only one instance wins each row: the update sees the claim another made meanwhile.
            let won = sqlx::query(
                "UPDATE consents SET refreshing_until_ms = $1 WHERE subscriber = $2 AND state = $3 \
                 AND refreshing_until_ms < $4 AND updated_ms = $5",
            )
            .bind(now_ms + hold_ms)
            .bind(&consent.subscriber)
            .bind(CONSENT_ACTIVE)
            .bind(now_ms)
            .bind(consent.updated_ms)
            .execute(&self.pool)
            .await?;
            if won.rows_affected() == 1 {
                claimed.push(consent);
            }
        }
        Ok(claimed)
    }

    /// Marks `subscriber`'s consent withdrawn: tokens wiped, `note` kept for the status view.
    pub async fn revoke_consent(&self, subscriber: &str, note: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE consents SET access_token = '', refresh_token = '', state = $1, note = $2, \
             refreshing_until_ms = 0, updated_ms = $3 WHERE subscriber = $4",
        )
        .bind(CONSENT_REVOKED)
        .bind(note)
        .bind(now_millis())
        .bind(subscriber)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
