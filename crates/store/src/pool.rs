//! The connection pool: opening either backend, migrating, the revision every change counts up.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};
use thiserror::Error;
use tracing::info;

/// The schema's migrations, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

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

impl StoreError {
    /// Whether the database is out of reach (worth trying again later), rather than refusing
    /// what was asked.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Open { .. } => true,
            StoreError::Query(error) => matches!(
                error,
                sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            ),
            _ => false,
        }
    }
}

/// Which database a store is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file: one instance.
    Sqlite,
    /// PostgreSQL: several instances may share it.
    Postgres,
}

/// A connection pool to ringer's database.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
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
            // A server's connection can break while idle, so a pooled one is pinged first; an
            // SQLite file lives in this process, and its ping was one more round trip to sqlx's
            // worker thread for every batch of call records.
            .test_before_acquire(backend != Backend::Sqlite)
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

    /// Closes every connection (a test's PostgreSQL can then stop at once).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Counts the revision up, inside the change's own transaction.
pub(crate) async fn bump(transaction: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), StoreError> {
    sqlx::query("UPDATE store_revision SET revision = revision + 1 WHERE id = 1").execute(&mut **transaction).await?;
    Ok(())
}

/// Milliseconds since the epoch, as the store keeps times it compares.
pub fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn now_seconds() -> i64 {
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
