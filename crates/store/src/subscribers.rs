//! The subscribers: number, route type, prefixes and behaviours per direction.

use sqlx::any::AnyRow;
use sqlx::Row;

use domain::types::{Msisdn, Prefix, RouteType};

use crate::pool::{bump, now_seconds, Store, StoreError};

/// Every subscriber, in the column order [`subscriber_of`] reads.
const ALL_SUBSCRIBERS: &str = "SELECT phone_number, route_type, mo_prefix, mt_prefix, mo_behaviour, mt_behaviour \
     FROM subscribers ORDER BY phone_number";

/// One subscriber by number, in the same column order.
const ONE_SUBSCRIBER: &str = "SELECT phone_number, route_type, mo_prefix, mt_prefix, mo_behaviour, mt_behaviour \
     FROM subscribers WHERE phone_number = $1";

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

impl Store {
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
