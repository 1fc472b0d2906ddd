//! `ringer db` and `ringer subscribers`: the database ringer keeps its state in, migrated
//! ahead of a deployment, and the subscribers in it, listed and changed while instances run
//! (they pick changes up within `store.poll_interval`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Deserialize;

use ringer::call::action::{Action, BehaviourConfig};
use ringer::config::serve::{ServeConfig, StoreConfig, SubscriberConfig};
use ringer::types::{Msisdn, Prefix, RouteType};
use store::Store;

/// Where the database is, for the commands that use it.
#[derive(Debug, clap::Args)]
pub(super) struct DatabaseArgs {
    /// The database: sqlite://FILE or postgres://USER@HOST:PORT/DB (before --config); default:
    /// `store.url` of --config, else sqlite://var/ringer.db.
    #[arg(long, value_name = "URL", global = true, env = "RINGER_DATABASE_URL", hide_env_values = true)]
    database: Option<String>,
    /// The TAS config whose database to use.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
}

impl DatabaseArgs {
    /// The database's URL, as the flags and the config say.
    fn url(&self) -> anyhow::Result<String> {
        Ok(match (&self.database, &self.config) {
            (Some(url), _) => url.clone(),
            (None, Some(config)) => ServeConfig::load(config)?.store.url,
            (None, None) => StoreConfig::default().url,
        })
    }

    /// Warns when the config file manages the subscribers itself: a change made here lasts
    /// only until that file is applied again (SIGHUP or a restart).
    fn warn_if_file_managed(&self) -> anyhow::Result<()> {
        if let Some(path) = &self.config {
            if !ServeConfig::load(path)?.subscribers.is_empty() {
                eprintln!(
                    "warning: {} lists [[subscriber]] entries: they replace the database's list on SIGHUP and at start",
                    path.display()
                );
            }
        }
        Ok(())
    }
}

/// `ringer db`'s arguments.
#[derive(Debug, clap::Args)]
pub(super) struct DbArgs {
    #[command(subcommand)]
    command: DbCommand,
    #[command(flatten)]
    database: DatabaseArgs,
}

#[derive(Debug, clap::Subcommand)]
enum DbCommand {
    /// Applies the schema migrations the database lacks (ringer serve also does at start).
    Migrate,
}

/// `ringer subscribers`' arguments.
#[derive(Debug, clap::Args)]
pub(super) struct SubscribersArgs {
    #[command(subcommand)]
    command: SubscribersCommand,
    #[command(flatten)]
    database: DatabaseArgs,
}

#[derive(Debug, clap::Subcommand)]
enum SubscribersCommand {
    /// Every subscriber in the database.
    List,
    /// Adds a subscriber, or changes the one with that number.
    Add {
        /// The number, E.164 (+4799990001).
        number: String,
        /// loop, loop-mo, loop-mt, fork, fallback or ingress.
        #[arg(long, value_name = "TYPE")]
        route_type: String,
        /// The prefix of calls the subscriber makes (1 to 8 digits).
        #[arg(long, value_name = "DIGITS")]
        mo_prefix: Option<String>,
        /// The prefix of calls the subscriber receives.
        #[arg(long, value_name = "DIGITS")]
        mt_prefix: Option<String>,
        /// What calls the subscriber makes get (loop, reject 486, forward +47..., answer echo...).
        #[arg(long, value_name = "ACTION")]
        mo: Option<String>,
        /// What calls the subscriber receives get.
        #[arg(long, value_name = "ACTION")]
        mt: Option<String>,
    },
    /// Removes a subscriber (running instances delete its registration).
    Remove {
        /// The number, E.164.
        number: String,
    },
    /// Adds or changes the [[subscriber]] entries of a TOML file (a ringer config or a file of
    /// subscribers only).
    Import {
        /// The TOML file.
        file: PathBuf,
        /// Make the database's list exactly the file's (subscribers not in it are removed).
        #[arg(long)]
        replace: bool,
    },
}

/// Opens the database at `url` and brings its schema up to date.
pub(super) async fn open(url: &str) -> anyhow::Result<Store> {
    let store = Store::open(url).await?;
    store.migrate().await?;
    Ok(store)
}

/// Runs `ringer db`.
pub(super) async fn run_db(args: DbArgs) -> anyhow::Result<ExitCode> {
    let url = args.database.url()?;
    let store = Store::open(&url).await?;
    match args.command {
        DbCommand::Migrate => {
            let applied = store.migrate().await?;
            let latest = Store::known_migrations().last().copied().unwrap_or_default();
            match applied.as_slice() {
                [] => println!("{}: up to date (schema version {latest})", store::without_password(&url)),
                applied => println!(
                    "{}: applied {} migration(s) {applied:?}; schema version {latest}",
                    store::without_password(&url),
                    applied.len()
                ),
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Runs `ringer subscribers`.
pub(super) async fn run_subscribers(args: SubscribersArgs) -> anyhow::Result<ExitCode> {
    // An SQLite path given from the wrong folder is an error, not a new empty database.
    let url = args.database.url()?;
    let store = Store::open_existing(&url).await.with_context(|| {
        format!("{} (a new database is made by `ringer db migrate`)", store::without_password(&url))
    })?;
    store.migrate().await?;
    if !matches!(args.command, SubscribersCommand::List) {
        args.database.warn_if_file_managed()?;
    }
    let code = match args.command {
        SubscribersCommand::List => {
            let subscribers = stored(&store).await?;
            println!("{:<16} {:<9} {:<9} {:<9} {:<28} mt", "number", "route", "mo pfx", "mt pfx", "mo");
            for subscriber in &subscribers {
                println!(
                    "{:<16} {:<9} {:<9} {:<9} {:<28} {}",
                    subscriber.phone_number.as_str(),
                    subscriber.route_type.name(),
                    subscriber.mo_prefix.as_ref().map_or("-", Prefix::as_str),
                    subscriber.mt_prefix.as_ref().map_or("-", Prefix::as_str),
                    behaviour_text(subscriber.mo.as_ref()),
                    behaviour_text(subscriber.mt.as_ref()),
                );
            }
            println!("{} subscriber(s)", subscribers.len());
            ExitCode::SUCCESS
        }
        SubscribersCommand::Add { number, route_type, mo_prefix, mt_prefix, mo, mt } => {
            let subscriber = SubscriberConfig {
                phone_number: Msisdn::parse(&number)?,
                route_type: route_type.parse::<RouteType>()?,
                mo_prefix: mo_prefix.as_deref().map(Prefix::parse).transpose()?,
                mt_prefix: mt_prefix.as_deref().map(Prefix::parse).transpose()?,
                mo: mo.as_deref().map(behaviour).transpose()?,
                mt: mt.as_deref().map(behaviour).transpose()?,
            };
            let row = ringer::tas::subscribers::checked_row(&subscriber)?;
            store.put_subscriber(&row).await?;
            println!("{} stored", subscriber.phone_number);
            ExitCode::SUCCESS
        }
        SubscribersCommand::Remove { number } => {
            let number = Msisdn::parse(&number)?;
            if store.remove_subscriber(&number).await? {
                println!("{number} removed");
                ExitCode::SUCCESS
            } else {
                eprintln!("no subscriber {number} in the database");
                ExitCode::FAILURE
            }
        }
        SubscribersCommand::Import { file, replace } => {
            let subscribers = subscribers_in(&file)?;
            let mut numbers = std::collections::HashSet::new();
            let mut rows = Vec::with_capacity(subscribers.len());
            // Every entry checked as the TAS will read it back, before anything is written.
            for subscriber in &subscribers {
                anyhow::ensure!(
                    numbers.insert(&subscriber.phone_number),
                    "{}: subscriber {} is listed twice; nothing written",
                    file.display(),
                    subscriber.phone_number
                );
                let row = ringer::tas::subscribers::checked_row(subscriber)
                    .with_context(|| format!("{}: nothing written", file.display()))?;
                rows.push(row);
            }
            if replace {
                let replaced = store.replace_subscribers(&rows).await?;
                println!(
                    "{}: {} written, {} removed, {} in the database",
                    file.display(),
                    replaced.written,
                    replaced.removed,
                    rows.len()
                );
            } else {
                store.put_subscribers(&rows).await?;
                println!("{}: {} subscriber(s) written", file.display(), rows.len());
            }
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}

/// The subscribers in the database, as the TAS reads them.
pub(super) async fn stored(store: &Store) -> anyhow::Result<Vec<SubscriberConfig>> {
    let rows = store.subscribers().await?;
    Ok(rows.into_iter().map(ringer::tas::subscribers::from_row).collect::<Result<_, _>>()?)
}

/// A behaviour given on the command line: an action alone.
fn behaviour(text: &str) -> anyhow::Result<BehaviourConfig> {
    let action: Action = text.parse().map_err(|reason: String| anyhow::anyhow!("{text:?}: {reason}"))?;
    Ok(BehaviourConfig::Action(action))
}

fn behaviour_text(behaviour: Option<&BehaviourConfig>) -> String {
    match behaviour {
        None => "(route type's default)".to_owned(),
        Some(BehaviourConfig::Action(action)) => action.to_string(),
        Some(BehaviourConfig::Full { action, .. }) => format!("{action} (with conditions)"),
    }
}

/// The `[[subscriber]]` entries of a TOML file; the file's other tables are not read.
fn subscribers_in(file: &Path) -> anyhow::Result<Vec<SubscriberConfig>> {
    #[derive(Deserialize)]
    struct Subscribers {
        #[serde(default, rename = "subscriber")]
        subscribers: Vec<SubscriberConfig>,
    }
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let parsed: Subscribers = toml::from_str(&text).with_context(|| format!("{}", file.display()))?;
    Ok(parsed.subscribers)
}
