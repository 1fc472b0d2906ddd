//! `ringer check-config FILE`: validates a config without starting anything, for a deployment
//! pipeline or a service manager's pre-start step. Exit 0 when it would start; otherwise 1 and
//! the first error on stderr, with its place (the TOML line and column, or the key).

use std::path::PathBuf;
use std::process::ExitCode;

use ringer::config::core::CoreConfig;
use ringer::config::serve::ServeConfig;

/// Arguments of `ringer check-config`.
#[derive(Debug, clap::Args)]
pub(super) struct CheckArgs {
    /// The config file to check.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The file is an emulated core's (`ringer core --config`), not the TAS's.
    #[arg(long)]
    core: bool,
}

pub(super) fn run(args: CheckArgs) -> ExitCode {
    let checked = match args.core {
        true => CoreConfig::load(&args.file).map(|_| ()).map_err(anyhow::Error::from),
        false => check_serve(&args),
    };
    match checked {
        Ok(()) => {
            println!("{}: ok", args.file.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The TAS's config: its values, then the certificate and key it names (the SIP endpoint's
/// TLS set-up, as `ringer serve` does it at start), and the secrets it names in the
/// environment (present, never shown).
fn check_serve(args: &CheckArgs) -> anyhow::Result<()> {
    let config = ServeConfig::load(&args.file)?;
    let file = args.file.display();
    ringer::tas::endpoint_config(&config).map_err(|error| anyhow::anyhow!("{file}: {error}"))?;
    ringer::registrar::auth::Credentials::from_config(&config.auth)
        .map_err(|error| anyhow::anyhow!("{file}: auth: {error}"))?;
    if let Some(signup) = &config.signup {
        ringer::tas::signup::check_environment(signup).map_err(|error| anyhow::anyhow!("{file}: {error}"))?;
    }
    Ok(())
}
