//! The `ringer` command: the TAS (`serve`), the emulated core (`core`) and the registration tools.

// Outside tests nothing is unwrapped: errors are handled or explained (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// SIP load is many small, short-lived allocations across threads (messages, transactions,
/// timers); glibc's allocator spent a third of the emulated core's time at 3,000 calls/s.
/// `--features system-allocator` leaves the system's, which heap profilers (heaptrack) see.
/// mimalloc is built without transparent huge pages (`no_thp`): it gives unused memory back
/// after a second, and each 2 MiB huge page touched again afterwards was zeroed whole by the
/// kernel, a tenth of the TAS's time on the reject path.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.default_log_level(), args.log_format());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", explain(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated; a cause already written out by the error above
/// it (libraries' messages often include their source) is not repeated.
fn explain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut above = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if !above.contains(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
        above = message;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::explain;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the greeting: {0}")]
    struct Inline(#[source] std::io::Error);

    #[test]
    fn causes_are_written_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let inline = anyhow::Error::new(Inline(io())).context("starting the TAS");
        assert_eq!(explain(&inline), "starting the TAS: reading the greeting: no such file");
        let plain = anyhow::Error::new(io()).context("reading the greeting").context("starting the TAS");
        assert_eq!(explain(&plain), "starting the TAS: reading the greeting: no such file");
    }
}
