//! Command-line parsing and the commands' wiring; protocol details live in the library.

mod call;
mod check;
mod conformance;
mod core;
mod demo;
mod dial;
mod leases;
mod ops;
mod register;
mod serve;
mod signals;
mod store;
mod voicemail;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// A SIP-side TAS/PBX for an operator core's SIP Breakout API, with an emulator of that core.
#[derive(Debug, Parser)]
#[command(name = "ringer", version, about)]
pub(crate) struct Cli {
    /// How log lines are written to stderr: `text` for people, `json` (one object per line)
    /// for log collectors. Also `$RINGER_LOG_FORMAT`.
    #[arg(long, global = true, value_enum, default_value = "text", env = "RINGER_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The form of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`), and
    /// the spans a line was written in (a call's lines carry its `call_id` there).
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the TAS: register every configured subscriber with the core and keep them registered.
    ///
    /// Without --config, runs on embedded defaults: an emulated core in the same process and
    /// sample subscribers, so it works with no operator account.
    Serve {
        /// The TAS config file (see ringer.example.toml). SIGHUP reloads its subscriber list.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run the embedded call path on free ports, place one call per route type and direction
    /// through it, and print what happened.
    Demo,
    /// Place a call from the TAS to a subscriber through the core (route type ingress).
    Call(call::CallArgs),
    /// Call a number through the emulated core's SBC as a handset, with WebRTC media: play a
    /// tone or a file, send DTMF, record what comes back.
    Dial(dial::DialArgs),
    /// Play the operator core against a TAS (this one or any other) and print a verdict per
    /// documented behaviour; exits 0 only when every case passed or was skipped.
    Conformance(conformance::ConformanceArgs),
    /// Inspect the voicemail store: list, play (copy out), delete.
    Voicemail(voicemail::VoicemailArgs),
    /// The database ringer keeps its state in: apply its schema migrations ahead of a start.
    Db(store::DbArgs),
    /// The subscribers in the database: list, add, remove, import a TOML file; running
    /// instances pick changes up within seconds.
    Subscribers(store::SubscribersArgs),
    /// Run the emulated operator core (SipBreakoutService and its OAuth token endpoint; with
    /// an [sbc] section, its SIP call legs too).
    Core {
        /// The core config file (see core.example.toml); sandbox on 127.0.0.1:50051 without it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Make a development CA and a server certificate it signs (ca.pem, server.pem, server.key),
    /// so peers verify the TAS against that CA instead of turning verification off.
    Certs {
        /// A DNS name or IP address the certificate must be valid for (repeatable).
        #[arg(long = "domain", value_name = "NAME", required = true)]
        domains: Vec<String>,
        /// The folder to write into.
        #[arg(long, value_name = "DIR", default_value = "certs")]
        out: PathBuf,
    },
    /// Check a config file without starting anything: exit 0 when `ringer serve` (or with
    /// --core, `ringer core`) would start with it, else 1 and the first error with its place.
    CheckConfig(check::CheckArgs),
    /// UpsertRegistration: put this TAS into a subscriber's calls (prints the answer as JSON).
    Register(register::RegistrationArgs),
    /// DeleteRegistration: take this TAS out of a subscriber's calls (prints the answer as JSON).
    Unregister(register::RegistrationArgs),
}

impl Cli {
    /// The form log lines take.
    pub(crate) fn log_format(&self) -> LogFormat {
        self.log_format
    }

    /// One-shot tools keep stderr quiet unless asked; servers log their life.
    pub(crate) fn default_log_level(&self) -> &'static str {
        match self.command {
            Command::Register(_) | Command::Unregister(_) => "warn",
            Command::Demo | Command::Call(_) | Command::Voicemail(_) => "warn",
            Command::Db(_) | Command::Subscribers(_) | Command::CheckConfig(_) => "warn",
            // The WebRTC stack warns of STUN checks that arrive before the answer: normal for
            // an offerer, and noise on a one-shot command's terminal.
            Command::Dial(_) | Command::Conformance(_) => "warn,rtc=error",
            Command::Serve { .. } | Command::Core { .. } | Command::Certs { .. } => "info",
        }
    }
}

/// Logs go to stderr, filtered by `RINGER_LOG` (e.g. `RINGER_LOG=ringer=debug`), as text or JSON.
pub(crate) fn init_logging(default_level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_env("RINGER_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).init(),
    }
}

/// Runs the parsed command.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    ringer::tls::install_crypto_provider();
    match cli.command {
        Command::Serve { config } => serve::run(config).await,
        Command::Core { config } => core::run(config).await,
        Command::Demo => demo::run().await,
        Command::Call(args) => call::run(args).await,
        Command::Dial(args) => dial::run(args).await,
        Command::Conformance(args) => conformance::run(args).await,
        Command::Voicemail(args) => voicemail::run(args).await,
        Command::Db(args) => store::run_db(args).await,
        Command::Subscribers(args) => store::run_subscribers(args).await,
        Command::Certs { domains, out } => {
            let files = ringer::tls::devcert::generate(&domains)?.write_to(&out)?;
            println!("CA certificate (give it to peers): {}", files.ca_cert.display());
            println!("server certificate: {}", files.server_cert.display());
            println!("server key (mode 0600): {}", files.server_key.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig(args) => Ok(check::run(args)),
        Command::Register(args) => register::run(register::Operation::Upsert, args).await,
        Command::Unregister(args) => register::run(register::Operation::Delete, args).await,
    }
}
