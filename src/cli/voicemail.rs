//! `ringer voicemail`: the mailbox on disk, listed, copied out, deleted.

use std::path::PathBuf;
use std::process::ExitCode;

use ringer::config::serve::{ServeConfig, VoicemailConfig};
use ringer::media::mailbox::Mailbox;

/// `ringer voicemail`'s arguments.
#[derive(Debug, clap::Args)]
pub(super) struct VoicemailArgs {
    #[command(subcommand)]
    command: VoicemailCommand,
    /// The mailbox folder; default: `voicemail.dir` of --config, else var/voicemail.
    #[arg(long, value_name = "DIR", global = true)]
    dir: Option<PathBuf>,
    /// The TAS config whose mailbox to use.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum VoicemailCommand {
    /// The messages, oldest first (recovering any a crash left partial).
    List {
        /// Only this subscriber's.
        #[arg(long, value_name = "E164")]
        subscriber: Option<String>,
    },
    /// Where message ID's audio is, and its metadata; with --out, a copy of the WAV.
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

/// Runs the subcommand.
pub(super) fn run(args: VoicemailArgs) -> anyhow::Result<ExitCode> {
    let dir = match (&args.dir, &args.config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(config)) => ServeConfig::load(config)?.voicemail.dir,
        (None, None) => VoicemailConfig::default().dir,
    };
    let mailbox = Mailbox::open(&dir)?;
    match args.command {
        VoicemailCommand::List { subscriber } => {
            for recovered in mailbox.recover()? {
                eprintln!("recovered {} (cut short, marked partial)", recovered.id);
            }
            let messages = mailbox.list(subscriber.as_deref())?;
            println!(
                "{:<24} {:<13} {:<13} {:<21} {:>9} {:<5} partial",
                "id", "subscriber", "caller", "recorded", "seconds", "codec"
            );
            for message in &messages {
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
            println!("{} message(s) in {}", messages.len(), dir.display());
        }
        VoicemailCommand::Play { id, out } => {
            let audio = mailbox.audio(&id)?;
            match out {
                Some(out) => {
                    std::fs::copy(&audio, &out)?;
                    println!("{} copied to {}", id, out.display());
                }
                None => println!("{}", audio.display()),
            }
        }
        VoicemailCommand::Delete { id } => {
            mailbox.delete(&id)?;
            println!("{id} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}
