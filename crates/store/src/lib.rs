//! ringer's state in a database, through one query layer for both backends (sqlx's `Any`
//! driver): an embedded SQLite file for a single instance (no database server needed) and
//! PostgreSQL for several instances sharing their state. The schema is versioned by the
//! migrations in `crates/store/migrations`, applied at start or ahead with `ringer db migrate`.
//!
//! What it keeps today: the subscribers (number, route type, prefixes, behaviours per
//! direction, the behaviours as opaque JSON the TAS writes and reads), and a revision counted
//! up by every change so that running instances notice one by reading a single number.

// Outside tests nothing is unwrapped: errors are handled or explained (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use thiserror::Error;
use tracing::info;

use domain::types::{Msisdn, Prefix, RouteType};

/// The schema's migrations, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Every subscriber, in the column order [`subscriber_of`] reads.
const ALL_SUBSCRIBERS: &str = "SELECT phone_number, route_type, mo_prefix, mt_prefix, mo_behaviour, mt_behaviour \
     FROM subscribers ORDER BY phone_number";

/// One subscriber by number, in the same column order.
const ONE_SUBSCRIBER: &str = "SELECT phone_number, route_type, mo_prefix, mt_prefix, mo_behaviour, mt_behaviour \
     FROM subscribers WHERE phone_number = $1";

/// The default database of a single instance: an SQLite file under `var/`.
pub const DEFAULT_URL: &str = "sqlite://var/ringer.db";

/// Why the store could not do what was asked.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The URL names no backend ringer has (`sqlite://` or `postgres://`).
    #[error("{url}: not a database URL ringer knows (use sqlite://FILE or postgres://USER@HOST:PORT/DB)")]
    UnknownBackend {
        /// The URL as given, without a password.
        url: String,
    },
    /// The SQLite file's folder could not be created.
    #[error("{}: cannot create the database's folder: {source}", folder.display())]
    Folder {
        /// The folder.
        folder: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be reached or opened.
    #[error("cannot open the database {url}: {source}")]
    Open {
        /// The URL, without a password.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// A row holds a value this version cannot read (written by hand, or by a newer ringer).
    #[error("subscriber {number}: {what} {value:?} in the database is not valid")]
    BadRow {
        /// The subscriber's number as stored.
        number: String,
        /// Which column.
        what: &'static str,
        /// Its value.
        value: String,
    },
}

/// Which database a store is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file: one instance.
    Sqlite,
    /// PostgreSQL: several instances may share it.
    Postgres,
}

/// One subscriber as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberRow {
    /// The number, E.164.
    pub phone_number: Msisdn,
    /// How the core routes the subscriber's calls to the TAS.
    pub route_type: RouteType,
    /// The prefix of calls the subscriber makes.
    pub mo_prefix: Option<Prefix>,
    /// The prefix of calls the subscriber receives.
    pub mt_prefix: Option<Prefix>,
    /// The behaviour for calls the subscriber makes, as JSON the TAS reads; `None`: the route
    /// type's default.
    pub mo_behaviour: Option<String>,
    /// The same for calls the subscriber receives.
    pub mt_behaviour: Option<String>,
}

/// What replacing the subscriber list changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replaced {
    /// Subscribers written (new or changed).
    pub written: usize,
    /// Subscribers removed because the new list leaves them out.
    pub removed: usize,
}

/// A connection pool to ringer's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Opens the database at `url` (`sqlite://FILE`, created with its folder when missing, or
    /// `postgres://…`). The schema is not touched: see [`Store::migrate`].
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Self::connect(url, true).await
    }

    /// Opens the database at `url` only if it exists: an SQLite file is not created (a path
    /// given from the wrong folder is an error, not a new empty database).
    pub async fn open_existing(url: &str) -> Result<Store, StoreError> {
        Self::connect(url, false).await
    }

    async fn connect(url: &str, create: bool) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, connect_url) = if let Some(path) = url.strip_prefix("sqlite://") {
            let folder = Path::new(path.split('?').next().unwrap_or_default()).parent();
            if let Some(folder) = folder.filter(|folder| create && !folder.as_os_str().is_empty()) {
                std::fs::create_dir_all(folder)
                    .map_err(|source| StoreError::Folder { folder: folder.to_owned(), source })?;
            }
            // Create the file on first use (or insist it exists); WAL lets readers go on while
            // one instance writes.
            let mode = if create { "mode=rwc" } else { "mode=rw" };
            let separator = if path.contains('?') { '&' } else { '?' };
            (Backend::Sqlite, format!("{url}{separator}{mode}"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::UnknownBackend { url: without_password(url) });
        };
        let shown = without_password(url);
        let pool = AnyPoolOptions::new()
            // A database that does not answer is an error at start, not a long silence.
            .acquire_timeout(std::time::Duration::from_secs(5))
            // One SQLite file takes one writer at a time; a pool of one avoids lock contention
            // inside the process.
            .max_connections(if backend == Backend::Sqlite { 1 } else { 8 })
            .connect(&connect_url)
            .await
            .map_err(|source| StoreError::Open { url: shown.clone(), source })?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
            sqlx::query("PRAGMA busy_timeout = 5000").execute(&pool).await?;
        }
        info!(url = %shown, ?backend, "database open");
        Ok(Store { pool, backend })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the migrations not applied yet; returns the versions it applied.
    pub async fn migrate(&self) -> Result<Vec<i64>, StoreError> {
        // Before the first migration the bookkeeping table does not exist: nothing applied yet.
        let before = self.applied().await.unwrap_or_default();
        MIGRATOR.run(&self.pool).await?;
        let after = self.applied().await?;
        let applied: Vec<i64> = after.into_iter().filter(|version| !before.contains(version)).collect();
        if !applied.is_empty() {
            info!(?applied, "database migrated");
        }
        Ok(applied)
    }

    /// The versions of the migrations applied so far.
    async fn applied(&self) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|row| row.try_get::<i64, _>(0)).collect::<Result<_, _>>()?)
    }

    /// The versions of the migrations this build knows.
    pub fn known_migrations() -> Vec<i64> {
        MIGRATOR.iter().map(|migration| migration.version).collect()
    }

    /// A number counted up by every change to what the store keeps.
    pub async fn revision(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT revision FROM store_revision WHERE id = 1").fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Every subscriber, by number.
    pub async fn subscribers(&self) -> Result<Vec<SubscriberRow>, StoreError> {
        let rows = sqlx::query(ALL_SUBSCRIBERS).fetch_all(&self.pool).await?;
        rows.iter().map(subscriber_of).collect()
    }

    /// The subscriber with `number`, if any.
    pub async fn subscriber(&self, number: &Msisdn) -> Result<Option<SubscriberRow>, StoreError> {
        let row = sqlx::query(ONE_SUBSCRIBER).bind(number.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(subscriber_of).transpose()
    }

    /// Adds `subscriber`, or replaces the one with its number.
    pub async fn put_subscriber(&self, subscriber: &SubscriberRow) -> Result<(), StoreError> {
        self.put_subscribers(std::slice::from_ref(subscriber)).await
    }

    /// Adds or replaces each of `subscribers`, all in one transaction: all are written or none.
    pub async fn put_subscribers(&self, subscribers: &[SubscriberRow]) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        bump(&mut transaction).await?;
        for subscriber in subscribers {
            upsert(&mut transaction, subscriber).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Removes the subscriber with `number`; whether there was one.
    pub async fn remove_subscriber(&self, number: &Msisdn) -> Result<bool, StoreError> {
        let mut transaction = self.pool.begin().await?;
        bump(&mut transaction).await?;
        let removed = sqlx::query("DELETE FROM subscribers WHERE phone_number = $1")
            .bind(number.as_str())
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        match removed {
            0 => transaction.rollback().await?,
            _ => transaction.commit().await?,
        }
        Ok(removed > 0)
    }

    /// Makes the subscriber list exactly `subscribers`, in one transaction: an instance reading
    /// meanwhile sees the old list or the new one, never a mixture, and a change another
    /// process makes meanwhile comes wholly before or wholly after.
    pub async fn replace_subscribers(&self, subscribers: &[SubscriberRow]) -> Result<Replaced, StoreError> {
        let mut transaction = self.pool.begin().await?;
        // Every writer counts the revision up first: that takes the write lock (SQLite) or the
        // revision row's lock (PostgreSQL), so the list read below is the one being replaced.
        bump(&mut transaction).await?;
        let rows = sqlx::query(ALL_SUBSCRIBERS).fetch_all(&mut *transaction).await?;
        let current: Vec<SubscriberRow> = rows.iter().map(subscriber_of).collect::<Result<_, _>>()?;
        let mut replaced = Replaced::default();
        for old in &current {
            if !subscribers.iter().any(|new| new.phone_number == old.phone_number) {
                sqlx::query("DELETE FROM subscribers WHERE phone_number = $1")
                    .bind(old.phone_number.as_str())
                    .execute(&mut *transaction)
                    .await?;
                replaced.removed += 1;
            }
        }
        for new in subscribers {
            if !current.contains(new) {
                upsert(&mut transaction, new).await?;
                replaced.written += 1;
            }
        }
        match replaced == Replaced::default() {
            // Nothing changed: the revision stays where it was.
            true => transaction.rollback().await?,
            false => transaction.commit().await?,
        }
        Ok(replaced)
    }

    /// Closes every connection (a test's PostgreSQL can then stop at once).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn upsert(transaction: &mut sqlx::Transaction<'_, sqlx::Any>, row: &SubscriberRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO subscribers (phone_number, route_type, mo_prefix, mt_prefix, mo_behaviour, mt_behaviour, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (phone_number) DO UPDATE SET route_type = excluded.route_type, mo_prefix = excluded.mo_prefix, \
         mt_prefix = excluded.mt_prefix, mo_behaviour = excluded.mo_behaviour, mt_behaviour = excluded.mt_behaviour, \
         updated_at = excluded.updated_at",
    )
    .bind(row.phone_number.as_str())
    .bind(row.route_type.name())
    .bind(row.mo_prefix.as_ref().map(Prefix::as_str))
    .bind(row.mt_prefix.as_ref().map(Prefix::as_str))
    .bind(row.mo_behaviour.as_deref())
    .bind(row.mt_behaviour.as_deref())
    .bind(now_seconds())
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

/// Counts the revision up, inside the change's own transaction.
async fn bump(transaction: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), StoreError> {
    sqlx::query("UPDATE store_revision SET revision = revision + 1 WHERE id = 1").execute(&mut **transaction).await?;
    Ok(())
}

fn subscriber_of(row: &AnyRow) -> Result<SubscriberRow, StoreError> {
    let number: String = row.try_get(0)?;
    let bad =
        |what: &'static str, value: &str| StoreError::BadRow { number: number.clone(), what, value: value.to_owned() };
    let route_type: String = row.try_get(1)?;
    let prefix = |index: usize, what: &'static str| -> Result<Option<Prefix>, StoreError> {
        match row.try_get::<Option<String>, _>(index)? {
            Some(text) => Prefix::parse(&text).map(Some).map_err(|_| bad(what, &text)),
            None => Ok(None),
        }
    };
    Ok(SubscriberRow {
        phone_number: Msisdn::parse(&number).map_err(|_| bad("phone_number", &number))?,
        route_type: route_type.parse().map_err(|_| bad("route_type", &route_type))?,
        mo_prefix: prefix(2, "mo_prefix")?,
        mt_prefix: prefix(3, "mt_prefix")?,
        mo_behaviour: row.try_get(4)?,
        mt_behaviour: row.try_get(5)?,
    })
}

fn now_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs() as i64)
}

/// `url` with any password replaced by `***`, for logs and errors: the one before the last `@`
/// of the authority (a password may hold `@`) and a `password=` query parameter.
pub fn without_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (address, query) = match rest.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (rest, None),
    };
    let mut shown = match address.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => address.to_owned(),
        },
        None => address.to_owned(),
    };
    if let Some(query) = query {
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        shown = format!("{shown}?{}", masked.join("&"));
    }
    match scheme {
        "" => shown,
        scheme => format!("{scheme}://{shown}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_a_log_line() {
        assert_eq!(without_password("postgres://ringer:s3cret@db:5432/ringer"), "postgres://ringer:***@db:5432/ringer");
        assert_eq!(without_password("postgres://ringer@db/ringer"), "postgres://ringer@db/ringer");
        assert_eq!(without_password("sqlite://var/ringer.db"), "sqlite://var/ringer.db");
        assert_eq!(without_password("postgres://ringer:p@ss@db/ringer"), "postgres://ringer:***@db/ringer");
        assert_eq!(
            without_password("postgres://db/ringer?user=ringer&password=s3cret"),
            "postgres://db/ringer?user=ringer&password=***"
        );
        assert_eq!(without_password("postgre://u:s3cret@db"), "postgre://u:***@db");
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_refused_by_name() {
        let error = Store::open("mysql://ringer:s3cret@localhost/ringer").await.unwrap_err();
        assert!(matches!(error, StoreError::UnknownBackend { .. }), "{error}");
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }
}
