//! A real PostgreSQL (Debian's `postgresql`) for a test: a fresh cluster in a temporary folder
//! owned by the `postgres` user (PostgreSQL refuses to run as root), on a free loopback port,
//! stopped and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running PostgreSQL cluster.
pub(crate) struct Postgres {
    folder: PathBuf,
    bin: PathBuf,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub(crate) url: String,
    /// The server's options (port, socket folder), to start it again the same.
    options: String,
}

/// The newest installed PostgreSQL's programs (`/usr/lib/postgresql/<version>/bin`).
fn bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    // /proc/self belongs to the process's effective user.
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc/self")) == 0
}

/// Runs `program` of the cluster's `bin` as the postgres user (when root), failing loudly.
fn run(bin: &Path, program: &str, args: &[&str]) -> Output {
    let path = bin.join(program);
    let output = if is_root() {
        Command::new("runuser").args(["-u", "postgres", "--"]).arg(&path).args(args).output()
    } else {
        Command::new(&path).args(args).output()
    }
    .unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl Postgres {
    /// A new cluster; `None` outside CI when PostgreSQL is not installed (the test then says so
    /// and passes). Under CI=true a missing PostgreSQL fails the test.
    pub(crate) fn start() -> Option<Postgres> {
        let Some(bin) = bin() else {
            let message = "PostgreSQL is not installed (Debian package postgresql; scripts/test installs it)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
            eprintln!("SKIPPED outside CI: {message}");
            return None;
        };
        let folder = tempfile::Builder::new().prefix("ringer-pg-").tempdir_in("/tmp").expect("temporary folder").keep();
        if is_root() {
            let chown = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&folder).status().expect("chown");
            assert!(chown.success(), "chown of {}", folder.display());
        }
        let data = folder.join("data");
        let data_text = data.to_str().expect("utf-8 path");
        run(&bin, "initdb", &["-D", data_text, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]);
        let port = super::free_port().port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            folder.display()
        );
        let log = folder.join("log");
        run(&bin, "pg_ctl", &["-D", data_text, "-o", &options, "-l", log.to_str().expect("utf-8"), "-w", "start"]);
        Some(Postgres { folder, bin, url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), options })
    }

    /// Stops the server (fast shutdown: clients are disconnected), keeping its data.
    pub(crate) fn stop(&self) {
        let data = self.folder.join("data");
        run(&self.bin, "pg_ctl", &["-D", data.to_str().expect("utf-8 path"), "-m", "fast", "-w", "stop"]);
    }

    /// Starts the stopped server again on the same port.
    pub(crate) fn restart(&self) {
        let data = self.folder.join("data");
        let log = self.folder.join("log");
        let (data, log) = (data.to_str().expect("utf-8 path"), log.to_str().expect("utf-8 path"));
        run(&self.bin, "pg_ctl", &["-D", data, "-o", &self.options, "-l", log, "-w", "start"]);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.folder.join("data");
        let path = self.bin.join("pg_ctl");
        let args = ["-D", data.to_str().unwrap_or_default(), "-m", "immediate", "-w", "stop"];
        let _ = if is_root() {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&path).args(args).output()
        } else {
            Command::new(&path).args(args).output()
        };
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}
