//! Registration leases: several instances share the subscribers, and each subscriber's
//! registration is refreshed by exactly one live instance, the holder of its lease.
//!
//! Each instance calls [`Store::rebalance_leases`] every heartbeat: it records the heartbeat,
//! frees the leases of instances whose heartbeat is older than the lease timeout, and takes
//! or gives back leases until it holds its fair share (the leases divided by the live
//! instances, rounded up). Every change is one conditional statement (`WHERE instance = …`),
//! so two instances never both take a lease: the second finds it taken and takes another.
//! Times are milliseconds since the Unix epoch on each writer's clock.

use sqlx::any::AnyRow;
use sqlx::Row;

use domain::types::Msisdn;

use crate::pool::{Store, StoreError};

/// Expiries written by one statement at most (two parameters each, well inside SQLite's limit).
const NOTES_PER_STATEMENT: usize = 500;

/// One instance, as the others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRow {
    /// Its name, unique among the instances sharing the database.
    pub instance: String,
    /// Where it takes SIP (its Contact), for operators reading the table.
    pub contact: String,
    /// When it started.
    pub started_at: i64,
    /// Its last heartbeat.
    pub heartbeat_at: i64,
}

/// One subscriber's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// The subscriber.
    pub phone_number: Msisdn,
    /// The instance refreshing its registration; `None` while nobody does.
    pub holder: Option<String>,
    /// Until when the core holds the registration, as its last holder noted.
    pub registered_until: Option<i64>,
}

/// What one [`Store::rebalance_leases`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leases {
    /// Live instances, this one included.
    pub live_instances: u64,
    /// The leases this instance holds now, by number; `None` when they are the ones it held
    /// before (as many as the caller said, none taken or given back).
    pub held: Option<Vec<LeaseRow>>,
    /// Leases taken by this call.
    pub claimed: u64,
    /// Leases given back by this call (above the fair share).
    pub released: u64,
    /// Leases of instances found dead, freed by this call.
    pub freed: u64,
}

impl Store {
    /// Records `me`'s heartbeat (its `heartbeat_at`), frees the leases of instances silent
    /// since before `dead_before`, and takes or gives back leases towards this instance's
    /// fair share. Subscribers without a lease get one (free); leases of removed subscribers
    /// go. `held_before`: how many leases the caller knows it holds, so that an unchanged set
    /// is not read again (`None` reads it).
    pub async fn rebalance_leases(
        &self,
        me: &InstanceRow,
        dead_before: i64,
        held_before: Option<u64>,
    ) -> Result<Leases, StoreError> {
        let pool = &self.pool;
        sqlx::query(
            "INSERT INTO instances (instance, contact, started_at, heartbeat_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (instance) DO UPDATE SET contact = excluded.contact, heartbeat_at = excluded.heartbeat_at",
        )
        .bind(&me.instance)
        .bind(&me.contact)
        .bind(me.started_at)
        .bind(me.heartbeat_at)
        .execute(pool)
        .await?;
        sqlx::query(
            "INSERT INTO registration_leases (phone_number, instance) \
             SELECT phone_number, '' FROM subscribers s \
             WHERE NOT EXISTS (SELECT 1 FROM registration_leases l WHERE l.phone_number = s.phone_number) \
             ON CONFLICT (phone_number) DO NOTHING",
        )
        .execute(pool)
        .await?;
        let freed = sqlx::query(
            "UPDATE registration_leases SET instance = '' WHERE instance <> '' \
             AND instance NOT IN (SELECT instance FROM instances WHERE heartbeat_at >= $1)",
        )
        .bind(dead_before)
        .execute(pool)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM instances WHERE heartbeat_at < $1").bind(dead_before).execute(pool).await?;
        // A removed subscriber's lease goes once nobody or its holder (which deletes the
        // registration as it applies the removal) has it.
        sqlx::query(
            "DELETE FROM registration_leases WHERE (instance = '' OR instance = $1) \
             AND phone_number NOT IN (SELECT phone_number FROM subscribers)",
        )
        .bind(&me.instance)
        .execute(pool)
        .await?;
        let live_instances =
            count(self, "SELECT COUNT(*) FROM instances WHERE heartbeat_at >= $1", dead_before).await?;
        let total: i64 = sqlx::query("SELECT COUNT(*) FROM registration_leases").fetch_one(pool).await?.try_get(0)?;
        let held: i64 = sqlx::query("SELECT COUNT(*) FROM registration_leases WHERE instance = $1")
            .bind(&me.instance)
            .fetch_one(pool)
            .await?
            .try_get(0)?;
        let live = live_instances.max(1) as i64;
        let fair = (total + live - 1) / live;
        let (mut claimed, mut released) = (0, 0);
        if held > fair {
            // The freshest registrations go: their new holder has the most time to take over.
            released = sqlx::query(
                "UPDATE registration_leases SET instance = '' WHERE instance = $1 AND phone_number IN \
                 (SELECT phone_number FROM registration_leases WHERE instance = $1 \
                  ORDER BY COALESCE(registered_until, 0) DESC, phone_number LIMIT $2)",
            )
            .bind(&me.instance)
            .bind(held - fair)
            .execute(pool)
            .await?
            .rows_affected();
        } else if held < fair {
            // The most urgent first: those expiring soonest, and those never registered.
            claimed = sqlx::query(
                "UPDATE registration_leases SET instance = $1 WHERE instance = '' AND phone_number IN \
                 (SELECT phone_number FROM registration_leases WHERE instance = '' \
                  ORDER BY COALESCE(registered_until, 0), phone_number LIMIT $2)",
            )
            .bind(&me.instance)
            .bind(fair - held)
            .execute(pool)
            .await?
            .rows_affected();
        }
        if claimed == 0 && released == 0 && held_before == Some(held.max(0) as u64) {
            return Ok(Leases { live_instances, held: None, claimed, released, freed });
        }
        let rows = sqlx::query(
            "SELECT phone_number, instance, registered_until FROM registration_leases WHERE instance = $1 \
             ORDER BY phone_number",
        )
        .bind(&me.instance)
        .fetch_all(pool)
        .await?;
        let held = rows.iter().map(lease_of).collect::<Result<_, _>>()?;
        Ok(Leases { live_instances, held: Some(held), claimed, released, freed })
    }

    /// Notes until when the core holds each registration that `instance` refreshed, for the
    /// instance that takes its lease over next.
    pub async fn note_registered(&self, instance: &str, until: &[(Msisdn, i64)]) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        // Many rows per statement: a VALUES list joined on the number (`column1`, `column2`
        // are its columns' names in both SQLite and PostgreSQL).
        for chunk in until.chunks(NOTES_PER_STATEMENT) {
            let values: Vec<String> =
                (0..chunk.len()).map(|index| format!("(${}, ${})", 2 * index + 2, 2 * index + 3)).collect();
            let query = format!(
                "UPDATE registration_leases SET registered_until = v.column2 FROM (VALUES {}) AS v \
                 WHERE registration_leases.instance = $1 AND registration_leases.phone_number = v.column1",
                values.join(", ")
            );
            let mut statement = sqlx::query(&query).bind(instance);
            for (number, until) in chunk {
                statement = statement.bind(number.as_str()).bind(*until);
            }
            statement.execute(&mut *transaction).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Hands `instance`'s leases back (the others take them at their next heartbeat), removes
    /// it from the instances, and tells how many leases it held and how many other instances
    /// are alive (heartbeat not older than `dead_before`), in one transaction that instances
    /// stopping at the same moment take in turn: of several stopping together, the last one
    /// to leave sees none left. When none is and `forget` is set, the noted expiries are
    /// cleared (the caller deletes the registrations, and whoever starts next must register
    /// at once).
    pub async fn leave(&self, instance: &str, dead_before: i64, forget: bool) -> Result<(u64, u64), StoreError> {
        let mut transaction = self.pool.begin().await?;
        // A write to the one revision row: the lock that puts leaving instances in turn.
        sqlx::query("UPDATE store_revision SET revision = revision WHERE id = 1").execute(&mut *transaction).await?;
        let released = sqlx::query("UPDATE registration_leases SET instance = '' WHERE instance = $1")
            .bind(instance)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM instances WHERE instance = $1").bind(instance).execute(&mut *transaction).await?;
        let others: i64 = sqlx::query("SELECT COUNT(*) FROM instances WHERE heartbeat_at >= $1")
            .bind(dead_before)
            .fetch_one(&mut *transaction)
            .await?
            .try_get(0)?;
        if others == 0 && forget {
            sqlx::query("UPDATE registration_leases SET registered_until = NULL").execute(&mut *transaction).await?;
        }
        transaction.commit().await?;
        Ok((released, others.max(0) as u64))
    }

    /// Every instance that has shown itself and not left, by name.
    pub async fn instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        let rows = sqlx::query("SELECT instance, contact, started_at, heartbeat_at FROM instances ORDER BY instance")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(InstanceRow {
                    instance: row.try_get(0)?,
                    contact: row.try_get(1)?,
                    started_at: row.try_get(2)?,
                    heartbeat_at: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Every lease, by number.
    pub async fn leases(&self) -> Result<Vec<LeaseRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT phone_number, instance, registered_until FROM registration_leases ORDER BY phone_number",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(lease_of).collect()
    }
}

async fn count(store: &Store, query: &str, bound: i64) -> Result<u64, StoreError> {
    let row = sqlx::query(query).bind(bound).fetch_one(&store.pool).await?;
    Ok(row.try_get::<i64, _>(0)?.max(0) as u64)
}

fn lease_of(row: &AnyRow) -> Result<LeaseRow, StoreError> {
    let number: String = row.try_get(0)?;
    let holder: String = row.try_get(1)?;
    Ok(LeaseRow {
        phone_number: Msisdn::parse(&number).map_err(|_| StoreError::BadRow {
            number: number.clone(),
            what: "phone_number",
            value: number.clone(),
        })?,
        holder: Some(holder).filter(|holder| !holder.is_empty()),
        registered_until: row.try_get(2)?,
    })
}
