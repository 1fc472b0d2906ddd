//! Voicemail messages: metadata and audio (WAV) in one row, so that a message left through
//! one instance is listed and played through any other. A message is written whole, in one
//! statement, from the recording instance's local spool (where it was recorded, crash-safe);
//! writing it twice (a crash between the write and the spool's clean-up) keeps the first.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::pool::{now_millis, Store, StoreError};

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
    /// New, heard, saved or deleted.
    pub state: MessageState,
}

/// Where a message is in its owner's hands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MessageState {
    /// Not heard yet.
    #[default]
    New,
    /// Heard (by phone, or marked through the API).
    Heard,
    /// Kept on purpose by the owner.
    Saved,
    /// Deleted by the owner: listed nowhere, removed for good once `voicemail.keep_deleted` has passed.
    Deleted,
}

impl MessageState {
    /// Its name in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::New => "new",
            MessageState::Heard => "heard",
            MessageState::Saved => "saved",
            MessageState::Deleted => "deleted",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [MessageState::New, MessageState::Heard, MessageState::Saved, MessageState::Deleted]
            .into_iter()
            .find(|state| state.as_str() == name)
    }
}

impl std::fmt::Display for MessageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The metadata columns, in the order [`voicemail_of`] reads them.
const COLUMNS: &str =
    "id, subscriber, caller, callee, direction, recorded_at, duration_ms, codec, partial, instance, state";

impl Store {
    /// Stores a message with its audio; `false` when one with its id is stored already.
    pub async fn add_voicemail(&self, message: &VoicemailRow, audio: &[u8]) -> Result<bool, StoreError> {
        let added = sqlx::query(&format!(
            "INSERT INTO voicemail_messages ({COLUMNS}, audio, state_changed_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING"
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
        .bind(message.state.as_str())
        .bind(audio.to_vec())
        .bind(now_millis())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(added > 0)
    }

    /// Every message not deleted, oldest first; only `subscriber`'s when given.
    pub async fn voicemails(&self, subscriber: Option<&str>) -> Result<Vec<VoicemailRow>, StoreError> {
        let rows = match subscriber {
            Some(subscriber) => {
                let query = format!(
                    "SELECT {COLUMNS} FROM voicemail_messages WHERE subscriber = $1 AND state <> 'deleted' ORDER BY id"
                );
                sqlx::query(&query).bind(subscriber).fetch_all(&self.pool).await?
            }
            None => {
                let query = format!("SELECT {COLUMNS} FROM voicemail_messages WHERE state <> 'deleted' ORDER BY id");
                sqlx::query(&query).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(voicemail_of).collect()
    }

    /// How many messages `subscriber`'s mailbox holds (deleted ones not counted).
    pub async fn count_voicemails(&self, subscriber: &str) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM voicemail_messages WHERE subscriber = $1 AND state <> 'deleted'")
            .bind(subscriber)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0))
    }

    /// The metadata and audio of message `id`, if stored and not deleted.
    pub async fn voicemail(&self, id: &str) -> Result<Option<(VoicemailRow, Vec<u8>)>, StoreError> {
        let query = format!("SELECT {COLUMNS}, audio FROM voicemail_messages WHERE id = $1 AND state <> 'deleted'");
        let Some(row) = sqlx::query(&query).bind(id).fetch_optional(&self.pool).await? else { return Ok(None) };
        Ok(Some((voicemail_of(&row)?, row.try_get(11)?)))
    }

    /// Moves message `id` of `subscriber` to `state`; whether there was such a message (not
    /// deleted). Deleting keeps the row until the retention purge removes it.
    pub async fn set_voicemail_state(
        &self,
        subscriber: &str,
        id: &str,
        state: MessageState,
    ) -> Result<bool, StoreError> {
        self.move_voicemail(subscriber, id, state, "state <> 'deleted'").await
    }

    /// Marks message `id` of `subscriber` heard if it is still new (a message saved or
    /// deleted meanwhile keeps that state); whether it was.
    pub async fn mark_voicemail_heard(&self, subscriber: &str, id: &str) -> Result<bool, StoreError> {
        self.move_voicemail(subscriber, id, MessageState::Heard, "state = 'new'").await
    }

    /// Moves message `id` of `subscriber` to `state` where it is in a state `from` (an SQL
    /// condition on `state`) allows; whether it was.
    async fn move_voicemail(
        &self,
        subscriber: &str,
        id: &str,
        state: MessageState,
        from: &'static str,
    ) -> Result<bool, StoreError> {
        let query = format!(
            "UPDATE voicemail_messages SET state = $1, state_changed_ms = $2 WHERE id = $3 AND subscriber = $4 AND {from}"
        );
        let changed = sqlx::query(&query)
            .bind(state.as_str())
            .bind(now_millis())
            .bind(id)
            .bind(subscriber)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(changed > 0)
    }

    /// Removes for good heard and saved messages unchanged since `kept_before_ms` and deleted
    /// ones deleted before `deleted_before_ms` (milliseconds since the epoch); how many.
    pub async fn purge_voicemails(&self, kept_before_ms: i64, deleted_before_ms: i64) -> Result<u64, StoreError> {
        let purged = sqlx::query(
            "DELETE FROM voicemail_messages WHERE (state IN ('heard', 'saved') AND state_changed_ms < $1) \
             OR (state = 'deleted' AND state_changed_ms < $2)",
        )
        .bind(kept_before_ms)
        .bind(deleted_before_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(purged)
    }

    /// Removes message `id` for good, whatever its state; whether there was one.
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
        state: MessageState::parse(&row.try_get::<String, _>(10)?).unwrap_or_default(),
    })
}
