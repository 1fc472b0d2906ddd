//! The signals a server answers: SIGINT and SIGTERM stop it, SIGHUP reloads its config.

/// What a signal asks of a server.
pub(super) enum SignalEvent {
    /// SIGINT or SIGTERM: clean up and exit.
    Stop,
    /// SIGHUP: reload the configuration.
    Reload,
}

/// The signals a server answers, installed at once: left to their default actions until
/// first polled, an early SIGTERM or SIGHUP would kill the process without clean-up.
pub(super) struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers.
    pub(super) fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal.
    pub(super) async fn next(&mut self) -> SignalEvent {
        tokio::select! {
            _ = self.interrupt.recv() => SignalEvent::Stop,
            _ = self.terminate.recv() => SignalEvent::Stop,
            _ = self.hangup.recv() => SignalEvent::Reload,
        }
    }
}
