//! `ringer voicemail`: the messages, listed, copied out, deleted; mailbox PINs; the HTTP API's
//! tokens. With `--config` or
//! `--database` they are the database's (the config's spool is recovered and moved in first,
//! as a starting instance would); with `--dir`, or on the embedded defaults, a spool folder's.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use ringer::config::serve::{ServeConfig, VoicemailConfig};
use ringer::media::mailbox::{Mailbox, MessageMeta};
use ringer::tas::leases::instance_name;
use ringer::tas::mailbox::{api, pin};
use ringer::tas::voicemail::{row_of, Archiver};
use ringer::types::Msisdn;
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
    /// Sets NUMBER's mailbox PIN (4 to 8 digits, read from standard input, kept as a hash);
    /// clears its failed logins and lockout.
    Pin {
        /// The mailbox (E.164).
        number: String,
    },
    /// The HTTP API's bearer tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
}

#[derive(Debug, clap::Subcommand)]
enum TokensCommand {
    /// Makes a token and prints it, once: the database keeps only its SHA-256.
    Add {
        /// The one mailbox it opens (E.164).
        #[arg(long, value_name = "E164", required_unless_present = "admin", conflicts_with = "admin")]
        mailbox: Option<String>,
        /// A token for every mailbox.
        #[arg(long)]
        admin: bool,
        /// What it is for (shown by `list`).
        #[arg(long, default_value = "")]
        label: String,
    },
    /// The tokens: hash prefix, mailbox, label, creation time.
    List,
    /// Revokes the tokens whose hash starts with PREFIX (at least 8 hex digits, from `list`).
    Revoke {
        /// The start of the hash.
        prefix: String,
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
        VoicemailCommand::Pin { number } => set_pin(database_of(&messages)?, &number).await?,
        VoicemailCommand::Tokens(command) => tokens(database_of(&messages)?, command).await?,
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

/// The database, for what only the database keeps (PINs, tokens).
fn database_of(messages: &Messages) -> anyhow::Result<&store::Store> {
    match messages {
        Messages::Database(database) => Ok(database),
        Messages::Folder(..) => anyhow::bail!("PINs and tokens live in the database: give --config or --database"),
    }
}

async fn set_pin(database: &store::Store, number: &str) -> anyhow::Result<ExitCode> {
    let owner = Msisdn::parse(number).with_context(|| format!("mailbox {number:?}"))?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the PIN from standard input")?;
    let hash = pin::hash(line.trim()).context("the PIN")?;
    database.set_pin_hash(owner.as_str(), &hash).await?;
    println!("PIN of {owner} set");
    Ok(ExitCode::SUCCESS)
}

async fn tokens(database: &store::Store, command: TokensCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokensCommand::Add { mailbox, admin: _, label } => {
            let mailbox = mailbox.map(|number| Msisdn::parse(&number).with_context(|| format!("mailbox {number:?}")));
            let mailbox = mailbox.transpose()?;
            let (token, hash) = api::new_token().map_err(|_| anyhow::anyhow!("no random source for a token"))?;
            database.add_token(&hash, mailbox.as_ref().map(Msisdn::as_str), &label).await?;
            let scope = mailbox.as_ref().map_or("every mailbox".to_owned(), |m| format!("mailbox {m}"));
            eprintln!("token {} for {scope}; shown once, keep it:", &hash[..12]);
            println!("{token}");
        }
        TokensCommand::List => {
            println!("{:<14} {:<16} {:<24} label", "hash", "mailbox", "created");
            for row in database.tokens().await? {
                let created = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH
                        + std::time::Duration::from_millis(u64::try_from(row.created_ms).unwrap_or(0)),
                );
                let mailbox = row.mailbox.as_deref().unwrap_or("(all)");
                println!(
                    "{:<14} {:<16} {:<24} {}",
                    row.token_hash.chars().take(12).collect::<String>(),
                    mailbox,
                    created.to_string(),
                    row.label
                );
            }
        }
        TokensCommand::Revoke { prefix } => {
            anyhow::ensure!(
                prefix.len() >= 8 && prefix.bytes().all(|b| b.is_ascii_hexdigit()),
                "give at least 8 hex digits of the token's hash (from `ringer voicemail tokens list`)"
            );
            let revoked = database.revoke_tokens(&prefix.to_ascii_lowercase()).await?;
            anyhow::ensure!(revoked > 0, "no token's hash starts with {prefix}");
            println!("{revoked} token(s) revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
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
