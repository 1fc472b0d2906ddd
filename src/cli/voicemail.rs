//! `ringer voicemail`: the messages, listed, copied out, deleted. With `--config` or
//! `--database` they are the database's (the config's spool is recovered and moved in first,
//! as a starting instance would); with `--dir`, or on the embedded defaults, a spool folder's.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use ringer::config::serve::{ServeConfig, VoicemailConfig};
use ringer::media::mailbox::{Mailbox, MessageMeta};
use ringer::tas::leases::instance_name;
use ringer::tas::voicemail::{row_of, Archiver};
use store::VoicemailRow;

/// `ringer voicemail`'s arguments.
#[derive(Debug, clap::Args)]
pub(super) struct VoicemailArgs {
    #[command(subcommand)]
    command: VoicemailCommand,
    /// A spool folder, read directly (the embedded defaults keep messages in var/voicemail).
    #[arg(long, value_name = "DIR", global = true, conflicts_with_all = ["config", "database"])]
    dir: Option<PathBuf>,
    /// The TAS config whose database (and spool) to use.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// The database: sqlite://FILE or postgres://USER@HOST:PORT/DB (before --config's).
    #[arg(long, value_name = "URL", global = true, env = "RINGER_DATABASE_URL", hide_env_values = true)]
    database: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum VoicemailCommand {
    /// The messages, oldest first (recovering any a crash left partial).
    List {
        /// Only this subscriber's.
        #[arg(long, value_name = "E164")]
        subscriber: Option<String>,
    },
    /// Message ID's metadata; with --out, a copy of its WAV.
    Play {
        /// The message id (from `list`).
        id: String,
        /// Copy the WAV here.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Deletes message ID.
    Delete {
        /// The message id (from `list`).
        id: String,
    },
}

/// Where the messages are.
enum Messages {
    /// A spool folder alone.
    Folder(PathBuf, Mailbox),
    /// The database.
    Database(store::Store),
}

/// Runs the subcommand.
pub(super) async fn run(args: VoicemailArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.as_deref().map(ServeConfig::load).transpose()?;
    let url = args.database.clone().or_else(|| config.as_ref().map(|config| config.store.url.clone()));
    let messages = match (&args.dir, url) {
        (Some(dir), _) => Messages::Folder(dir.clone(), Mailbox::open(dir)?),
        (None, None) => {
            let dir = VoicemailConfig::default().dir;
            Messages::Folder(dir.clone(), Mailbox::open(&dir)?)
        }
        (None, Some(url)) => {
            let database = store::Store::open_existing(&url)
                .await
                .with_context(|| "the database does not exist yet: `ringer db migrate` or `ringer serve` makes it")?;
            database.migrate().await?;
            if let Some(config) = &config {
                // What the config's instance left in its spool belongs in the database too.
                let archiver = Archiver::new(
                    Mailbox::open(&config.voicemail.dir)?,
                    database.clone(),
                    &instance_name(&config.store),
                );
                for recovered in archiver.recover().await? {
                    eprintln!("recovered {} (cut short, marked partial)", recovered.id);
                }
                archiver.sweep().await?;
            }
            Messages::Database(database)
        }
    };
    let code = match args.command {
        VoicemailCommand::List { subscriber } => list(&messages, subscriber.as_deref()).await?,
        VoicemailCommand::Play { id, out } => play(&messages, &id, out).await?,
        VoicemailCommand::Delete { id } => {
            match &messages {
                Messages::Folder(_, mailbox) => mailbox.delete(&id)?,
                Messages::Database(database) => {
                    anyhow::ensure!(database.delete_voicemail(&id).await?, "no message {id}");
                }
            }
            println!("{id} deleted");
            ExitCode::SUCCESS
        }
    };
    if let Messages::Database(database) = messages {
        database.close().await;
    }
    Ok(code)
}

async fn list(messages: &Messages, subscriber: Option<&str>) -> anyhow::Result<ExitCode> {
    let (rows, place): (Vec<VoicemailRow>, String) = match messages {
        Messages::Folder(dir, mailbox) => {
            for recovered in mailbox.recover()? {
                eprintln!("recovered {} (cut short, marked partial)", recovered.id);
            }
            let rows = mailbox.list(subscriber)?.iter().map(|meta: &MessageMeta| row_of(meta, "")).collect();
            (rows, dir.display().to_string())
        }
        Messages::Database(database) => (database.voicemails(subscriber).await?, "the database".to_owned()),
    };
    println!(
        "{:<24} {:<13} {:<13} {:<21} {:>9} {:<5} partial",
        "id", "subscriber", "caller", "recorded", "seconds", "codec"
    );
    for message in &rows {
        println!(
            "{:<24} {:<13} {:<13} {:<21} {:>9.1} {:<5} {}",
            message.id,
            message.subscriber,
            message.caller.as_deref().unwrap_or("-"),
            message.recorded_at,
            message.duration_ms as f64 / 1000.0,
            message.codec,
            if message.partial { "yes" } else { "no" }
        );
    }
    println!("{} message(s) in {place}", rows.len());
    Ok(ExitCode::SUCCESS)
}

async fn play(messages: &Messages, id: &str, out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    match messages {
        Messages::Folder(_, mailbox) => {
            let audio = mailbox.audio(id)?;
            match out {
                Some(out) => {
                    std::fs::copy(&audio, &out)?;
                    println!("{id} copied to {}", out.display());
                }
                None => println!("{}", audio.display()),
            }
        }
        Messages::Database(database) => {
            let Some((message, audio)) = database.voicemail(id).await? else { anyhow::bail!("no message {id}") };
            match out {
                Some(out) => {
                    std::fs::write(&out, &audio).with_context(|| format!("cannot write {}", out.display()))?;
                    println!("{id} copied to {}", out.display());
                }
                None => println!(
                    "{id}: {} from {}, {:.1} s, {} bytes of WAV (--out FILE copies it)",
                    message.subscriber,
                    message.caller.as_deref().unwrap_or("-"),
                    message.duration_ms as f64 / 1000.0,
                    audio.len()
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
