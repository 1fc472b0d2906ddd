//! Voicemail messages: metadata and audio (WAV) in one row, so that a message left through
//! one instance is listed and played through any other. A message is written whole, in one
//! statement, from the recording instance's local spool (where it was recorded, crash-safe);
//! writing it twice (a crash between the write and the spool's clean-up) keeps the first.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::pool::{Store, StoreError};

/// One message's metadata, as the store keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoicemailRow {
    /// Its id (time of recording and a random suffix).
    pub id: String,
    /// The mailbox's subscriber.
    pub subscriber: String,
    /// Who left it.
    pub caller: Option<String>,
    /// The number that was called.
    pub callee: Option<String>,
    /// `MO` or `MT`, when known.
    pub direction: Option<String>,
    /// When recording started (RFC 3339).
    pub recorded_at: String,
    /// Length in milliseconds.
    pub duration_ms: u64,
    /// The codec it arrived in.
    pub codec: String,
    /// Cut short by a crash or kill and recovered.
    pub partial: bool,
    /// The instance that recorded it.
    pub instance: String,
}

/// The metadata columns, in the order [`voicemail_of`] reads them.
const COLUMNS: &str = "id, subscriber, caller, callee, direction, recorded_at, duration_ms, codec, partial, instance";

impl Store {
    /// Stores a message with its audio; `false` when one with its id is stored already.
    pub async fn add_voicemail(&self, message: &VoicemailRow, audio: &[u8]) -> Result<bool, StoreError> {
        let added = sqlx::query(&format!(
            "INSERT INTO voicemail_messages ({COLUMNS}, audio) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (id) DO NOTHING"
        ))
        .bind(&message.id)
        .bind(&message.subscriber)
        .bind(message.caller.as_deref())
        .bind(message.callee.as_deref())
        .bind(message.direction.as_deref())
        .bind(&message.recorded_at)
        .bind(i64::try_from(message.duration_ms).unwrap_or(i64::MAX))
        .bind(&message.codec)
        .bind(i64::from(message.partial))
        .bind(&message.instance)
        .bind(audio.to_vec())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(added > 0)
    }

    /// Every message, oldest first; only `subscriber`'s when given.
    pub async fn voicemails(&self, subscriber: Option<&str>) -> Result<Vec<VoicemailRow>, StoreError> {
        let rows = match subscriber {
            Some(subscriber) => {
                let query = format!("SELECT {COLUMNS} FROM voicemail_messages WHERE subscriber = $1 ORDER BY id");
                sqlx::query(&query).bind(subscriber).fetch_all(&self.pool).await?
            }
            None => {
                let query = format!("SELECT {COLUMNS} FROM voicemail_messages ORDER BY id");
                sqlx::query(&query).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(voicemail_of).collect()
    }

    /// The metadata and audio of message `id`, if stored.
    pub async fn voicemail(&self, id: &str) -> Result<Option<(VoicemailRow, Vec<u8>)>, StoreError> {
        let query = format!("SELECT {COLUMNS}, audio FROM voicemail_messages WHERE id = $1");
        let Some(row) = sqlx::query(&query).bind(id).fetch_optional(&self.pool).await? else { return Ok(None) };
        Ok(Some((voicemail_of(&row)?, row.try_get(10)?)))
    }

    /// Deletes message `id`; whether there was one.
    pub async fn delete_voicemail(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM voicemail_messages WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }
}

fn voicemail_of(row: &AnyRow) -> Result<VoicemailRow, StoreError> {
    let duration: i64 = row.try_get(6)?;
    let partial: i64 = row.try_get(8)?;
    Ok(VoicemailRow {
        id: row.try_get(0)?,
        subscriber: row.try_get(1)?,
        caller: row.try_get(2)?,
        callee: row.try_get(3)?,
        direction: row.try_get(4)?,
        recorded_at: row.try_get(5)?,
        duration_ms: u64::try_from(duration).unwrap_or(0),
        codec: row.try_get(7)?,
        partial: partial != 0,
        instance: row.try_get(9)?,
    })
}
