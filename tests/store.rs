//! The store, the same cases against both backends: an SQLite file and a real PostgreSQL
//! started for the test (Debian's postgresql, as the postgres user, on a free port). Under
//! CI=true a missing PostgreSQL fails.

mod common;

use common::postgres::Postgres;
use ringer::types::{Msisdn, Prefix, RouteType};
use store::{Backend, Replaced, Store, StoreError, SubscriberRow};

fn row(number: &str, route_type: RouteType, mt: Option<&str>) -> SubscriberRow {
    SubscriberRow {
        phone_number: Msisdn::parse(number).expect("number"),
        route_type,
        mo_prefix: Some(Prefix::parse("11").expect("prefix")),
        mt_prefix: Some(Prefix::parse("22").expect("prefix")),
        mo_behaviour: None,
        mt_behaviour: mt.map(str::to_owned),
    }
}

/// Every case, against the store at `url`.
async fn cases(url: &str, backend: Backend) {
    let store = Store::open(url).await.expect("open");
    assert_eq!(store.backend(), backend);
    // Migrations: all of them the first time, none the second.
    assert_eq!(store.migrate().await.expect("migrate"), Store::known_migrations());
    assert_eq!(store.migrate().await.expect("migrate again"), Vec::<i64>::new());
    assert_eq!(store.subscribers().await.expect("list"), []);
    let start = store.revision().await.expect("revision");

    // Add, read back, change, remove; each change counts the revision up.
    let loop_sub = row("+4799990001", RouteType::Loop, Some(r#"{"action":"answer echo"}"#));
    store.put_subscriber(&loop_sub).await.expect("put");
    assert_eq!(store.subscriber(&loop_sub.phone_number).await.expect("get"), Some(loop_sub.clone()));
    let changed = SubscriberRow { route_type: RouteType::LoopMt, mo_prefix: None, ..loop_sub.clone() };
    store.put_subscriber(&changed).await.expect("put again");
    assert_eq!(store.subscribers().await.expect("list"), std::slice::from_ref(&changed));
    assert_eq!(store.revision().await.expect("revision"), start + 2);

    // Another instance on the same database sees the change through the revision.
    let other = Store::open(url).await.expect("second instance");
    assert_eq!(other.revision().await.expect("revision"), start + 2);
    assert_eq!(other.subscribers().await.expect("list"), std::slice::from_ref(&changed));

    // Replacing the list: written and removed counted; the same list again changes nothing.
    let fork = row("+4799990004", RouteType::Fork, None);
    let ingress = row("+4799990006", RouteType::Ingress, None);
    let list = [fork.clone(), ingress.clone()];
    assert_eq!(store.replace_subscribers(&list).await.expect("replace"), Replaced { written: 2, removed: 1 });
    assert_eq!(store.subscribers().await.expect("list"), list);
    let revision = store.revision().await.expect("revision");
    assert_eq!(store.replace_subscribers(&list).await.expect("replace again"), Replaced::default());
    assert_eq!(store.revision().await.expect("revision"), revision, "nothing changed, no new revision");

    assert!(store.remove_subscriber(&fork.phone_number).await.expect("remove"));
    assert!(!store.remove_subscriber(&fork.phone_number).await.expect("remove again"));
    assert_eq!(other.subscribers().await.expect("list"), [ingress]);

    // Two instances writing at once: every write lands, each counted once.
    let before = store.revision().await.expect("revision");
    let writers = [store.clone(), other.clone()].into_iter().enumerate().map(|(instance, writer)| {
        tokio::spawn(async move {
            for index in 0..20 {
                let number = format!("+47988{instance}{index:05}");
                writer.put_subscriber(&row(&number, RouteType::Loop, None)).await.expect("concurrent put");
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.expect("writer");
    }
    assert_eq!(store.revision().await.expect("revision"), before + 40);
    let written = store.subscribers().await.expect("list");
    assert_eq!(written.iter().filter(|s| s.phone_number.as_str().starts_with("+47988")).count(), 40);

    // A row this version cannot read is named, not skipped or panicked on.
    sqlx_insert_bad_row(url).await;
    let error = store.subscribers().await.expect_err("a bad route type");
    assert!(matches!(&error, StoreError::BadRow { what: "route_type", .. }), "{error}");
    assert!(error.to_string().contains("+4799990009") && error.to_string().contains("teleport"), "{error}");
    other.close().await;
    store.close().await;
}

/// A subscriber row with a route type no ringer writes, as a hand edit would leave it.
async fn sqlx_insert_bad_row(url: &str) {
    sqlx::any::install_default_drivers();
    let mut connection = <sqlx::AnyConnection as sqlx::Connection>::connect(url).await.expect("connect");
    sqlx::query("INSERT INTO subscribers (phone_number, route_type, updated_at) VALUES ('+4799990009', 'teleport', 0)")
        .execute(&mut connection)
        .await
        .expect("insert");
}

#[tokio::test]
async fn the_store_on_an_sqlite_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A folder that does not exist yet is created.
    let url = format!("sqlite://{}/state/ringer.db", dir.path().display());
    cases(&url, Backend::Sqlite).await;
    assert!(dir.path().join("state/ringer.db").exists());
}

#[tokio::test]
async fn the_store_on_postgresql() {
    let Some(postgres) = Postgres::start() else { return };
    cases(&postgres.url, Backend::Postgres).await;
}

#[tokio::test]
async fn an_unreachable_database_is_an_error_that_names_it_without_the_password() {
    let port = common::free_port().port();
    let url = format!("postgres://ringer:s3cret@127.0.0.1:{port}/ringer");
    let error = Store::open(&url).await.expect_err("nothing listens there");
    let text = error.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")) && !text.contains("s3cret"), "{text}");
}
