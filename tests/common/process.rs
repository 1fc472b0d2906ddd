//! `ringer` as a separate process, as operators run it: one-shot commands with their output,
//! and servers with their output collected while they run.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::eventually;
use super::netns::NetNs;

/// The binary under test.
pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_ringer");

#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

pub(crate) async fn ringer(args: &[&str], env: &[(&str, &str)]) -> Output {
    ringer_in(None, args, env).await
}

/// `ringer` with `args`, in `namespace` when given.
pub(crate) async fn ringer_in(namespace: Option<&NetNs>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = match namespace {
        Some(namespace) => namespace.command(BINARY),
        None => Command::new(BINARY),
    };
    command.args(args).env_remove("RINGER_TOKEN").env_remove("RINGER_CLIENT_SECRET").env_remove("RINGER_CLIENT_ID");
    for (key, value) in env {
        command.env(key, value);
    }
    finished(command.output()).await
}

/// `ringer` with `args` and `input` on its standard input (a PIN, never an argument).
pub(crate) async fn ringer_with_input(args: &[&str], input: &str) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(BINARY)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ringer runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).await.expect("input written");
    drop(stdin);
    finished(child.wait_with_output()).await
}

/// What a `ringer` run printed, once it ends (within 30 s).
async fn finished(run: impl std::future::Future<Output = std::io::Result<std::process::Output>>) -> Output {
    let output =
        tokio::time::timeout(Duration::from_secs(30), run).await.expect("ringer finished in time").expect("ringer ran");
    Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) stdout: Arc<Mutex<String>>,
    pub(crate) stderr: Arc<Mutex<String>>,
}

impl Server {
    pub(crate) fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_in(None, args, env)
    }

    /// `ringer` with `args`, in `namespace` when given.
    pub(crate) fn spawn_in(namespace: Option<&NetNs>, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = match namespace {
            Some(namespace) => namespace.command(BINARY),
            None => Command::new(BINARY),
        };
        let mut child = command
            .args(args)
            .envs(env.iter().copied())
            .env("RINGER_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn ringer");
        let stdout = collect(child.stdout.take().expect("stdout"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        Self { child, stdout, stderr }
    }

    pub(crate) fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("running") as i32;
        kill(Pid::from_raw(pid), signal).expect("signal sent");
    }

    pub(crate) async fn wait(mut self) -> (Option<i32>, String, String) {
        let Ok(status) = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await else {
            let _ = self.child.start_kill();
            let stdout = self.stdout.lock().expect("lock").clone();
            let stderr = self.stderr.lock().expect("lock").clone();
            panic!("ringer did not exit within 20 s:\n{stdout}\n{stderr}");
        };
        let status = status.expect("wait");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stdout = self.stdout.lock().expect("lock").clone();
        let stderr = self.stderr.lock().expect("lock").clone();
        (status.code(), stdout, stderr)
    }
}

impl Server {
    /// The SIP/TLS address `ringer serve` announces on stdout.
    pub(crate) async fn tls_listener(&self) -> std::net::SocketAddr {
        let stdout = self.stdout.clone();
        eventually(Duration::from_secs(10), "TLS listener announced", || {
            stdout.lock().expect("lock").contains("SIP/TLS listening on ")
        })
        .await;
        let announced = self.stdout.lock().expect("lock");
        announced
            .lines()
            .find_map(|line| line.strip_prefix("SIP/TLS listening on "))
            .and_then(|addr| addr.trim().parse().ok())
            .expect("address")
    }
}

fn collect(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut sink = sink.lock().expect("lock");
            sink.push_str(&line);
            sink.push('\n');
        }
    });
    text
}

/// `config` with its own database beside the file (`<file>.db`): parallel servers must not share
/// one, as they would the default var/ringer.db.
pub(crate) fn with_store(path: &std::path::Path, config: impl AsRef<str>) -> String {
    format!("[store]\nurl = \"sqlite://{}\"\n{}", path.with_extension("db").display(), config.as_ref())
}

pub(crate) fn serve_config(endpoint: &str, status: std::net::SocketAddr, subscribers: &[(&str, &str)]) -> String {
    let mut text = format!(
        "[tas]\nsip_uri = \"sips:tas.example.com:5061\"\n[core]\nendpoint = \"{endpoint}\"\n[auth]\nmode = \"bearer\"\ntoken_env = \"RINGER_TEST_TOKEN\"\n[registrar]\ninitial_backoff = \"100ms\"\nstatus_listen = \"{status}\"\n[sip]\ntcp_listen = \"127.0.0.1:0\"\n"
    );
    for (number, route_type) in subscribers {
        text.push_str(&format!(
            "[[subscriber]]\nphone_number = \"{number}\"\nroute_type = \"{route_type}\"\nmo_prefix = \"11\"\n"
        ));
    }
    text
}
