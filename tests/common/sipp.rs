//! Running SIPp (Debian `sip-tester`) and reading its results.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// The path of a scenario in `scenarios/`.
pub(crate) fn scenario(name: &str) -> String {
    format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A SIPp server (a uas scenario) on `port`, logging to `log`, handling `calls` calls.
pub(crate) fn server(sipp: &Path, name: &str, transport: &str, port: u16, calls: u32, log: &Path) -> Child {
    Command::new(sipp)
        .args(["-sf", &scenario(name), "-t", transport, "-p", &port.to_string(), "-i", "127.0.0.1"])
        .args(["-m", &calls.to_string(), "-nostdin", "-timeout", "60s", "-trace_logs", "-log_file"])
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("SIPp server starts")
}

/// A SIPp client: `calls` calls at 10/s to `target`; returns (successful, failed, screen).
pub(crate) async fn client(
    sipp: &Path,
    name: &str,
    transport: &str,
    keys: &[(&str, &str)],
    service: &str,
    target: SocketAddr,
    calls: u32,
) -> (u32, u32, String) {
    let mut command = Command::new(sipp);
    let port = super::free_port().port().to_string();
    command.args(["-sf", &scenario(name), "-t", transport, "-i", "127.0.0.1", "-p", &port]);
    for (key, value) in keys {
        command.args(["-key", key, value]);
    }
    command.args(["-s", service, "-m", &calls.to_string(), "-r", "10", "-nostdin", "-timeout", "60s"]);
    command.arg("-timeout_error").arg(target.to_string()).stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("SIPp finished in time")
        .expect("SIPp ran");
    let screen = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let (ok, failed) = call_counts(&screen);
    (ok, failed, screen)
}

/// Waits for a SIPp server to finish its calls; returns its exit code and screen.
pub(crate) async fn finished(server: Child) -> (Option<i32>, String) {
    let output = tokio::time::timeout(Duration::from_secs(60), server.wait_with_output())
        .await
        .expect("SIPp server finished")
        .expect("SIPp server ran");
    let screen = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.code(), screen)
}

/// The path of `tool`, or `None` outside CI when it is missing (the test then says so and passes).
pub(crate) fn tool(candidates: &[&str], package: &str) -> Option<PathBuf> {
    let found = candidates.iter().find_map(|name| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        let message = format!("{} not found: install Debian's {package} (./scripts/test does)", candidates[0]);
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        eprintln!("SKIPPED outside CI: {message}");
    }
    found
}

/// Cumulative successful and failed calls from SIPp's final statistics screen.
pub(crate) fn call_counts(screen: &str) -> (u32, u32) {
    let cumulative = |label: &str| {
        screen
            .lines()
            .rev()
            .find(|line| line.trim_start().starts_with(label))
            .and_then(|line| line.rsplit('|').next())
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(u32::MAX)
    };
    (cumulative("Successful call"), cumulative("Failed call"))
}
