//! What each subscriber sets for themselves, as JSON the TAS writes and reads (the store knows
//! nothing of its shape).

use sqlx::Row;

use crate::pool::{now_millis, Store, StoreError};

impl Store {
    /// `subscriber`'s own settings (JSON), if they set any.
    pub async fn subscriber_settings(&self, subscriber: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT settings FROM subscriber_settings WHERE subscriber = $1")
            .bind(subscriber)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }

    /// Stores `subscriber`'s own settings (JSON), replacing those before.
    pub async fn put_subscriber_settings(&self, subscriber: &str, settings: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO subscriber_settings (subscriber, settings, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (subscriber) DO UPDATE SET settings = excluded.settings, updated_ms = excluded.updated_ms",
        )
        .bind(subscriber)
        .bind(settings)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
