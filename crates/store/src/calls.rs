//! Call detail records: one row per call the core brought as leg 2, written when the call
//! ends, by the instance that handled it.

use sqlx::any::AnyRow;
use sqlx::{Arguments, Row};

use crate::pool::{Backend, Store, StoreError};

/// One call, as the store keeps it. Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallRecordRow {
    /// A unique id of this record.
    pub record_id: String,
    /// The instance that handled the call.
    pub instance: String,
    /// Call-ID of leg 2.
    pub call_id: String,
    /// Call-IDs of the leg 3 INVITEs placed, in order.
    pub leg3_call_ids: Vec<String>,
    /// Leg 2's Request-URI, as received.
    pub request_uri: String,
    /// The subscriber the call was for, when it matched one.
    pub subscriber: Option<String>,
    /// `MO` or `MT`.
    pub direction: Option<String>,
    /// The subscriber's route type.
    pub route_type: Option<String>,
    /// The prefix found in the Request-URI.
    pub prefix: Option<String>,
    /// The caller's number.
    pub caller: Option<String>,
    /// The number called, prefix removed.
    pub callee: Option<String>,
    /// The actions taken, in order.
    pub actions: Vec<String>,
    /// Why the call was diverted last (RFC 5806 reason), if it was.
    pub diversion_reason: Option<String>,
    /// The final status leg 2 got.
    pub final_status: Option<u16>,
    /// When leg 2's INVITE arrived.
    pub invite_at: i64,
    /// When the call was answered, if it was.
    pub answered_at: Option<i64>,
    /// When it ended (final refusal, or hang-up).
    pub ended_at: i64,
    /// Who ended it: `caller`, `callee` or `tas`.
    pub ended_by: Option<String>,
    /// The audio codec agreed, when the call was answered.
    pub codec: Option<String>,
    /// What arrived of the caller's media, when the TAS answered it itself.
    pub reception: Option<Reception>,
}

/// What arrived of a call's media (RFC 3550 receiver statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reception {
    /// RTP packets received.
    pub packets_received: u64,
    /// RTP packets expected but not received.
    pub packets_lost: u64,
    /// The interarrival jitter at the end, in microseconds.
    pub jitter_us: u64,
}

/// The columns of `call_records`, in the order [`record_of`] reads and [`Store::add_call_records`] writes.
const COLUMNS: &str = "record_id, instance, call_id, leg3_call_ids, request_uri, subscriber, direction, route_type, \
     prefix, caller, callee, actions, diversion_reason, final_status, invite_at, answered_at, ended_at, ended_by, \
     codec, packets_received, packets_lost, jitter_us";

/// Rows written by one INSERT, largest first: a batch goes in as few statements as these
/// sizes make up, and the statements for these few shapes stay prepared.
const ROWS_PER_INSERT: [usize; 4] = [64, 16, 4, 1];

/// The number of columns in [`COLUMNS`].
const COLUMN_COUNT: usize = 22;

/// `record`'s values bound to `query`, in [`COLUMNS`]' order.
fn bind_record<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    record: &'q CallRecordRow,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(&record.record_id)
        .bind(&record.instance)
        .bind(&record.call_id)
        .bind(json_list(&record.leg3_call_ids))
        .bind(&record.request_uri)
        .bind(record.subscriber.as_deref())
        .bind(record.direction.as_deref())
        .bind(record.route_type.as_deref())
        .bind(record.prefix.as_deref())
        .bind(record.caller.as_deref())
        .bind(record.callee.as_deref())
        .bind(json_list(&record.actions))
        .bind(record.diversion_reason.as_deref())
        .bind(record.final_status.map(i64::from))
        .bind(record.invite_at)
        .bind(record.answered_at)
        .bind(record.ended_at)
        .bind(record.ended_by.as_deref())
        .bind(record.codec.as_deref())
        .bind(record.reception.map(|r| saturating_i64(r.packets_received)))
        .bind(record.reception.map(|r| saturating_i64(r.packets_lost)))
        .bind(record.reception.map(|r| saturating_i64(r.jitter_us)))
}

/// `INSERT` of `rows` rows. SQLite gets anonymous `?` parameters: it looks a numbered one up
/// among the statement's parameters by name, a cost growing with the square of their number
/// (a 100-row statement spent most of a loaded TAS's CPU there). PostgreSQL numbers them.
fn insert_statement(backend: Backend, rows: usize) -> String {
    use std::fmt::Write as _;
    // Built in one string: a `String` per parameter was a fifth of a rejected call's allocations.
    let mut statement = String::with_capacity(128 + COLUMNS.len() + rows * COLUMN_COUNT * 6);
    statement.push_str("INSERT INTO call_records (");
    statement.push_str(COLUMNS);
    statement.push_str(") VALUES ");
    for row in 0..rows {
        statement.push_str(if row == 0 { "(" } else { ", (" });
        for column in 1..=COLUMN_COUNT {
            if column > 1 {
                statement.push_str(", ");
            }
            match backend {
                Backend::Sqlite => statement.push('?'),
                Backend::Postgres => {
                    let _ = write!(statement, "${}", row * COLUMN_COUNT + column);
                }
            }
        }
        statement.push(')');
    }
    statement.push_str(" ON CONFLICT (record_id) DO NOTHING");
    statement
}

/// `total` rows cut into statements of the sizes in [`ROWS_PER_INSERT`], largest first.
fn statement_sizes(total: usize) -> impl Iterator<Item = usize> {
    let mut left = total;
    ROWS_PER_INSERT.into_iter().flat_map(move |size| {
        let count = left / size;
        left %= size;
        std::iter::repeat_n(size, count)
    })
}

impl Store {
    /// Writes `records` in one transaction: all or none. A record already stored (a batch
    /// whose commit succeeded but whose answer was lost, written again) is kept once. Each
    /// statement is a round trip to the database (to SQLite's worker thread): rows go in a few
    /// statements of several rows each ([`ROWS_PER_INSERT`]).
    pub async fn add_call_records(&self, records: &[CallRecordRow]) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        let mut rest = records;
        for size in statement_sizes(records.len()) {
            let (chunk, after) = rest.split_at(size);
            rest = after;
            let statement = insert_statement(self.backend(), size);
            // Room for every value at once: bound one by one, the arguments grew (and were
            // copied) a dozen times per statement.
            let mut arguments = sqlx::any::AnyArguments::default();
            arguments.reserve(size * COLUMN_COUNT, 0);
            let query = chunk.iter().fold(sqlx::query_with(&statement, arguments), bind_record);
            query.execute(&mut *transaction).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// The latest `limit` calls, newest first; only `subscriber`'s when given.
    pub async fn call_records(&self, subscriber: Option<&str>, limit: u32) -> Result<Vec<CallRecordRow>, StoreError> {
        // SQLite numbers parameters by first appearance: $1 comes first in the text.
        let query = match subscriber {
            Some(_) => format!(
                "SELECT {COLUMNS} FROM call_records WHERE subscriber = $1 ORDER BY invite_at DESC, record_id LIMIT $2"
            ),
            None => format!("SELECT {COLUMNS} FROM call_records ORDER BY invite_at DESC, record_id LIMIT $1"),
        };
        let mut query = sqlx::query(&query);
        if let Some(subscriber) = subscriber {
            query = query.bind(subscriber);
        }
        let query = query.bind(i64::from(limit));
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(record_of).collect()
    }
}

/// `value` as a BIGINT column holds it (counts never reach 2^63 in practice).
fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A list as a JSON array of strings.
fn json_list(items: &[String]) -> String {
    // Strings always serialise; written straight from the slice, with no copy of it first.
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

fn record_of(row: &AnyRow) -> Result<CallRecordRow, StoreError> {
    let record_id: String = row.try_get(0)?;
    let list = |index: usize, what: &'static str| -> Result<Vec<String>, StoreError> {
        let text: String = row.try_get(index)?;
        serde_json::from_str::<Vec<String>>(&text).map_err(|_| StoreError::BadRow {
            number: record_id.clone(),
            what,
            value: text.clone(),
        })
    };
    let status: Option<i64> = row.try_get(13)?;
    let count = |index: usize| -> Result<Option<u64>, StoreError> {
        let value: Option<i64> = row.try_get(index)?;
        Ok(value.map(|value| u64::try_from(value).unwrap_or(0)))
    };
    let reception = match (count(19)?, count(20)?, count(21)?) {
        (Some(packets_received), Some(packets_lost), Some(jitter_us)) => {
            Some(Reception { packets_received, packets_lost, jitter_us })
        }
        _ => None,
    };
    Ok(CallRecordRow {
        record_id: record_id.clone(),
        instance: row.try_get(1)?,
        call_id: row.try_get(2)?,
        leg3_call_ids: list(3, "leg3_call_ids")?,
        request_uri: row.try_get(4)?,
        subscriber: row.try_get(5)?,
        direction: row.try_get(6)?,
        route_type: row.try_get(7)?,
        prefix: row.try_get(8)?,
        caller: row.try_get(9)?,
        callee: row.try_get(10)?,
        actions: list(11, "actions")?,
        diversion_reason: row.try_get(12)?,
        final_status: status.and_then(|status| u16::try_from(status).ok()),
        invite_at: row.try_get(14)?,
        answered_at: row.try_get(15)?,
        ended_at: row.try_get(16)?,
        ended_by: row.try_get(17)?,
        codec: row.try_get(18)?,
        reception,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insert_has_one_parameter_per_column_and_row() {
        let sqlite = insert_statement(Backend::Sqlite, 2);
        let postgres = insert_statement(Backend::Postgres, 2);
        let row = vec!["?"; COLUMN_COUNT].join(", ");
        assert_eq!(
            sqlite,
            format!("INSERT INTO call_records ({COLUMNS}) VALUES ({row}), ({row}) ON CONFLICT (record_id) DO NOTHING")
        );
        let numbered = |row: usize| {
            (1..=COLUMN_COUNT).map(|column| format!("${}", row * COLUMN_COUNT + column)).collect::<Vec<_>>().join(", ")
        };
        assert_eq!(
            postgres,
            format!(
                "INSERT INTO call_records ({COLUMNS}) VALUES ({}), ({}) ON CONFLICT (record_id) DO NOTHING",
                numbered(0),
                numbered(1)
            )
        );
        assert_eq!(COLUMNS.split(',').count(), COLUMN_COUNT);
        assert!(postgres.ends_with("$44) ON CONFLICT (record_id) DO NOTHING"));
    }

    #[test]
    fn statements_cover_a_batch_largest_first() {
        assert_eq!(statement_sizes(101).collect::<Vec<_>>(), [64, 16, 16, 4, 1]);
        assert_eq!(statement_sizes(0).count(), 0);
    }
}
