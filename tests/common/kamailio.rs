//! Kamailio (Debian `kamailio` + `kamailio-tls-modules`) as a stateful, record-routing proxy
//! between the emulated core and ringer, configured from `tests/peers/kamailio/*.cfg.in`.
//! Its requests and relays are logged (`KAMREQ`, `KAMRELAY`, `KAMRPL` lines) for the tests to read.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where the proxy listens and where it relays to.
pub(crate) struct ProxyPorts {
    /// Its TLS listener facing the core (the TAS's registered `sip_uri`).
    pub core_side: u16,
    /// The core's interconnect (TLS), where requests from the TAS go.
    pub core: u16,
    /// Its listener facing the TAS (`tas_transport`).
    pub tas_side: u16,
    /// The TAS's listener (`tas_transport`).
    pub tas: u16,
    /// `tcp` or `tls` between the proxy and the TAS.
    pub tas_transport: &'static str,
}

/// A running Kamailio; stopped (its whole process group) when dropped.
pub(crate) struct Kamailio {
    child: Child,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

fn templates() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/kamailio")
}

fn fill(template: &str, values: &[(&str, String)]) -> String {
    values.iter().fold(template.to_owned(), |text, (name, value)| text.replace(&format!("@{name}@"), value))
}

impl Kamailio {
    /// Starts Kamailio with `ports`, its TLS certificate and key, checking peers against `ca`;
    /// `None` outside CI when Kamailio is not installed (the test then passes, saying so).
    pub(crate) async fn start(ports: ProxyPorts, cert: &Path, key: &Path, ca: &Path) -> Option<Kamailio> {
        let binary = super::sipp::tool(&["kamailio"], "kamailio kamailio-tls-modules")?;
        let dir = tempfile::tempdir().expect("temp dir");
        let tls_cfg = dir.path().join("tls.cfg");
        let values = [
            ("CORE_TLS_PORT", ports.core_side.to_string()),
            ("SBC_TLS_PORT", ports.core.to_string()),
            ("TAS_SIDE_PORT", ports.tas_side.to_string()),
            ("TAS_PORT", ports.tas.to_string()),
            ("TAS_TRANSPORT", ports.tas_transport.to_owned()),
            ("TLS_CFG", tls_cfg.display().to_string()),
            ("CERT_FILE", cert.display().to_string()),
            ("KEY_FILE", key.display().to_string()),
            ("CA_FILE", ca.display().to_string()),
            ("TLS_CLIENT_VERIFY", "yes".to_owned()),
            ("LOG_LEVEL", "2".to_owned()),
        ];
        let read = |name: &str| std::fs::read_to_string(templates().join(name)).expect("Kamailio template");
        std::fs::write(&tls_cfg, fill(&read("tls.cfg.in"), &values)).expect("tls.cfg");
        let cfg = dir.path().join("proxy.cfg");
        std::fs::write(&cfg, fill(&read("proxy.cfg.in"), &values)).expect("proxy.cfg");
        Some(Self::run(&binary, dir, &cfg).await)
    }

    /// Starts Kamailio as a load balancer: its dispatcher spreads calls arriving on
    /// `access_port` (UDP and TCP) over `instances` (TCP ports on loopback) round robin,
    /// probing each with OPTIONS every second; `None` outside CI when Kamailio is missing.
    pub(crate) async fn start_dispatcher(access_port: u16, instances: &[u16]) -> Option<Kamailio> {
        let binary = super::sipp::tool(&["kamailio"], "kamailio kamailio-tls-modules")?;
        let dir = tempfile::tempdir().expect("temp dir");
        let list = dir.path().join("dispatcher.list");
        let entries: String = instances.iter().map(|port| format!("1 sip:127.0.0.1:{port};transport=tcp\n")).collect();
        std::fs::write(&list, entries).expect("dispatcher.list");
        let values = [
            ("ACCESS_PORT", access_port.to_string()),
            ("LIST_FILE", list.display().to_string()),
            ("LOG_LEVEL", "2".to_owned()),
        ];
        let template = std::fs::read_to_string(templates().join("dispatcher.cfg.in")).expect("Kamailio template");
        let cfg = dir.path().join("dispatcher.cfg");
        std::fs::write(&cfg, fill(&template, &values)).expect("dispatcher.cfg");
        Some(Self::run(&binary, dir, &cfg).await)
    }

    /// Runs Kamailio with `cfg` (in `dir`, kept while it runs) until it says it is ready.
    async fn run(binary: &Path, dir: tempfile::TempDir, cfg: &Path) -> Kamailio {
        let mut child = Command::new(binary)
            .arg("-f")
            .arg(cfg)
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-Y"])
            .arg(dir.path().join("run"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("kamailio starts");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().expect("stderr");
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().expect("log");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let kamailio = Kamailio { child, log, _dir: dir };
        let ready = super::poll_until(Duration::from_secs(10), || kamailio.log().contains("KAMREADY")).await;
        assert!(ready, "Kamailio did not start:\n{}", kamailio.log());
        kamailio
    }

    /// Everything Kamailio logged so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// The requests of `method` Kamailio received for `call_id` (its `KAMREQ` lines).
    pub(crate) fn requests(&self, method: &str, call_id: &str) -> usize {
        self.log()
            .lines()
            .filter(|line| line.contains(&format!("KAMREQ {method} ")) && line.contains(&format!("call-id={call_id}")))
            .count()
    }

    /// The lines where Kamailio refused an in-dialog request it could not route (404).
    pub(crate) fn unroutable(&self) -> Vec<String> {
        self.log().lines().filter(|line| line.contains("without our Route")).map(str::to_owned).collect()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // Kamailio's children keep the ports unless the whole group goes.
        if let Some(pid) = self.child.id() {
            let group = nix::unistd::Pid::from_raw(-(pid as i32));
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM);
        }
    }
}
