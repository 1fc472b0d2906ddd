//! What a mailbox keeps beside its messages: the owner's greetings, the PIN (as a hash) with
//! its failed logins and lockout, and the HTTP API's bearer tokens (as hashes).

use sqlx::Row;

use crate::pool::{now_millis, Store, StoreError};

/// A mailbox's PIN and how logins with it have gone lately.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinState {
    /// The PIN's hash (as the TAS wrote it); `None` until the owner sets one.
    pub pin_hash: Option<String>,
    /// Wrong PINs in a row since the last good one.
    pub failed_logins: u32,
    /// No PIN login before this time (milliseconds since the epoch); 0 when not locked.
    pub locked_until_ms: i64,
}

/// One API token as the store keeps it (its hash, never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// The one mailbox it opens; `None`: all of them (admin).
    pub mailbox: Option<String>,
    /// What it is for, as its creator wrote.
    pub label: String,
    /// When it was made (milliseconds since the epoch).
    pub created_ms: i64,
}

impl Store {
    /// Stores `subscriber`'s greeting of `kind` (WAV bytes), replacing the one before.
    pub async fn put_greeting(&self, subscriber: &str, kind: &str, wav: &[u8]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO voicemail_greetings (subscriber, kind, audio, updated_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (subscriber, kind) DO UPDATE SET audio = excluded.audio, updated_ms = excluded.updated_ms",
        )
        .bind(subscriber)
        .bind(kind)
        .bind(wav.to_vec())
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `subscriber`'s greeting of `kind` (WAV bytes), if recorded.
    pub async fn greeting(&self, subscriber: &str, kind: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT audio FROM voicemail_greetings WHERE subscriber = $1 AND kind = $2")
            .bind(subscriber)
            .bind(kind)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }

    /// The kinds of greeting `subscriber` has recorded, by name.
    pub async fn greetings(&self, subscriber: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT kind FROM voicemail_greetings WHERE subscriber = $1 ORDER BY kind")
            .bind(subscriber)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    /// Removes `subscriber`'s greeting of `kind`; whether there was one.
    pub async fn delete_greeting(&self, subscriber: &str, kind: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM voicemail_greetings WHERE subscriber = $1 AND kind = $2")
            .bind(subscriber)
            .bind(kind)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    /// `subscriber`'s PIN and lockout; the default (no PIN) for a mailbox never set up.
    pub async fn pin_state(&self, subscriber: &str) -> Result<PinState, StoreError> {
        let row = sqlx::query(
            "SELECT pin_hash, failed_logins, locked_until_ms FROM voicemail_mailboxes WHERE subscriber = $1",
        )
        .bind(subscriber)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(PinState::default()) };
        Ok(PinState {
            pin_hash: row.try_get(0)?,
            failed_logins: u32::try_from(row.try_get::<i64, _>(1)?).unwrap_or(u32::MAX),
            locked_until_ms: row.try_get(2)?,
        })
    }

    /// Sets `subscriber`'s PIN hash, clearing failed logins and any lockout.
    pub async fn set_pin_hash(&self, subscriber: &str, pin_hash: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO voicemail_mailboxes (subscriber, pin_hash, failed_logins, locked_until_ms) \
             VALUES ($1, $2, 0, 0) ON CONFLICT (subscriber) DO UPDATE SET pin_hash = excluded.pin_hash, \
             failed_logins = 0, locked_until_ms = 0",
        )
        .bind(subscriber)
        .bind(pin_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Counts a PIN login attempt on `subscriber`'s mailbox before the PIN is checked, so that
    /// calls in parallel share the one allowance: the attempts in a row so far, this one
    /// included; `None` when the mailbox is locked at `now_ms` or has no PIN row.
    pub async fn begin_login(&self, subscriber: &str, now_ms: i64) -> Result<Option<u32>, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let counted = sqlx::query(
            "UPDATE voicemail_mailboxes SET failed_logins = failed_logins + 1 \
             WHERE subscriber = $1 AND locked_until_ms <= $2",
        )
        .bind(subscriber)
        .bind(now_ms)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        let attempts = match counted {
            0 => None,
            _ => {
                let row = sqlx::query("SELECT failed_logins FROM voicemail_mailboxes WHERE subscriber = $1")
                    .bind(subscriber)
                    .fetch_one(&mut *transaction)
                    .await?;
                Some(u32::try_from(row.try_get::<i64, _>(0)?).unwrap_or(u32::MAX))
            }
        };
        transaction.commit().await?;
        Ok(attempts)
    }

    /// Locks PIN logins to `subscriber`'s mailbox until `until_ms`, the count starting again.
    pub async fn lock_mailbox(&self, subscriber: &str, until_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE voicemail_mailboxes SET failed_logins = 0, locked_until_ms = $1 WHERE subscriber = $2")
            .bind(until_ms)
            .bind(subscriber)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Clears `subscriber`'s count of wrong PINs after a good one.
    pub async fn clear_failed_logins(&self, subscriber: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE voicemail_mailboxes SET failed_logins = 0 WHERE subscriber = $1")
            .bind(subscriber)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores an API token's hash, for `mailbox` or (without) for all.
    pub async fn add_token(&self, token_hash: &str, mailbox: Option<&str>, label: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_tokens (token_hash, mailbox, label, created_ms) VALUES ($1, $2, $3, $4)")
            .bind(token_hash)
            .bind(mailbox)
            .bind(label)
            .bind(now_millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The token whose hash is `token_hash`, if any.
    pub async fn token(&self, token_hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query("SELECT token_hash, mailbox, label, created_ms FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_of).transpose()
    }

    /// Every token, oldest first.
    pub async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query("SELECT token_hash, mailbox, label, created_ms FROM api_tokens ORDER BY created_ms")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_of).collect()
    }

    /// Revokes every token whose hash starts with `hash_prefix`; how many. An empty prefix
    /// (or one of LIKE's wildcards alone) revokes nothing.
    pub async fn revoke_tokens(&self, hash_prefix: &str) -> Result<u64, StoreError> {
        let literal = hash_prefix.replace(['%', '_'], "");
        if literal.is_empty() {
            return Ok(0);
        }
        let revoked = sqlx::query("DELETE FROM api_tokens WHERE token_hash LIKE $1")
            .bind(format!("{literal}%"))
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(revoked)
    }
}

fn token_of(row: &sqlx::any::AnyRow) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        token_hash: row.try_get(0)?,
        mailbox: row.try_get(1)?,
        label: row.try_get(2)?,
        created_ms: row.try_get(3)?,
    })
}
