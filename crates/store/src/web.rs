//! The self-care page's sessions and the one-time PINs sent by SMS for a first login: hashes
//! only, each with its expiry.

use sqlx::Row;

use crate::pool::{now_millis, Store, StoreError};

/// A one-time PIN as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginPinRow {
    /// The PIN's hash.
    pub pin_hash: String,
    /// When it stops opening (ms since the epoch).
    pub expires_ms: i64,
    /// When it was sent.
    pub sent_ms: i64,
}

impl Store {
    /// Starts a session (`token_hash` of its cookie) for `subscriber` until `expires_ms`.
    pub async fn put_session(&self, token_hash: &str, subscriber: &str, expires_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO web_sessions (token_hash, subscriber, expires_ms, created_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(subscriber)
        .bind(expires_ms)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The subscriber of the session `token_hash`, while it lasts at `now_ms`.
    pub async fn session(&self, token_hash: &str, now_ms: i64) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT subscriber FROM web_sessions WHERE token_hash = $1 AND expires_ms > $2")
            .bind(token_hash)
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }

    /// Ends the session `token_hash`, and every session that expired before `now_ms`.
    pub async fn end_session(&self, token_hash: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1 OR expires_ms <= $2")
            .bind(token_hash)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Keeps a one-time PIN for `subscriber`, replacing one sent before.
    pub async fn put_login_pin(&self, subscriber: &str, pin_hash: &str, expires_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO login_pins (subscriber, pin_hash, expires_ms, sent_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (subscriber) DO UPDATE SET pin_hash = excluded.pin_hash, \
             expires_ms = excluded.expires_ms, sent_ms = excluded.sent_ms",
        )
        .bind(subscriber)
        .bind(pin_hash)
        .bind(expires_ms)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `subscriber`'s one-time PIN, if one was sent.
    pub async fn login_pin(&self, subscriber: &str) -> Result<Option<LoginPinRow>, StoreError> {
        let row = sqlx::query("SELECT pin_hash, expires_ms, sent_ms FROM login_pins WHERE subscriber = $1")
            .bind(subscriber)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => {
                Some(LoginPinRow { pin_hash: row.try_get(0)?, expires_ms: row.try_get(1)?, sent_ms: row.try_get(2)? })
            }
            None => None,
        })
    }

    /// Spends `subscriber`'s one-time PIN `pin_hash` (its one try); whether this caller spent
    /// it (of logins at once, one only). The row stays, so the time it was sent still limits
    /// how soon another may be sent.
    pub async fn spend_login_pin(&self, subscriber: &str, pin_hash: &str) -> Result<bool, StoreError> {
        let spent = sqlx::query("UPDATE login_pins SET pin_hash = '' WHERE subscriber = $1 AND pin_hash = $2")
            .bind(subscriber)
            .bind(pin_hash)
            .execute(&self.pool)
            .await?;
        Ok(spent.rows_affected() == 1)
    }

    /// Ends `subscriber`'s sessions but `keep_hash` (after a PIN change).
    pub async fn end_other_sessions(&self, subscriber: &str, keep_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM web_sessions WHERE subscriber = $1 AND token_hash <> $2")
            .bind(subscriber)
            .bind(keep_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets `subscriber`'s one-time PIN (replaced by their own PIN).
    pub async fn delete_login_pin(&self, subscriber: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_pins WHERE subscriber = $1").bind(subscriber).execute(&self.pool).await?;
        Ok(())
    }
}
