//! HEP v3 mirroring checked by tools nobody here wrote: sngrep (Debian's) receives ringer's HEP
//! datagrams as a Homer capture server would and writes the SIP messages they carry into a pcap
//! file; tshark (Debian's) decodes that file as SIP; the messages must be exactly those SIPp
//! (Debian's `sip-tester`) logged sending to ringer and receiving from it.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::process::Server;
use common::scrape::until_status;
use common::sipp::{scenario, tool};
use common::*;
use ringer::config::core::AuthMode;

/// One SIP message as seen on the wire: whether ringer received it, its start line, its Call-ID.
type Seen = (bool, String, String);

/// The messages of SIPp's `-trace_msg` log, from ringer's side (SIPp's "sent" is ringer's
/// "received"), counted.
fn sipp_messages(log: &str) -> BTreeMap<Seen, usize> {
    let mut seen = BTreeMap::new();
    for block in log.split("-----------------------------------------------").skip(1) {
        let mut lines = block.lines().map(str::trim).filter(|line| !line.is_empty());
        let (Some(_stamp), Some(header)) = (lines.next(), lines.next()) else { continue };
        let received_by_ringer = header.contains("message sent");
        let Some(start) = lines.next() else { continue };
        let call_id = block
            .lines()
            .find_map(|line| line.trim().strip_prefix("Call-ID:"))
            .map(|id| id.trim().to_owned())
            .unwrap_or_default();
        *seen.entry((received_by_ringer, start.to_owned(), call_id)).or_insert(0) += 1;
    }
    seen
}

/// The SIP messages tshark decodes from `pcap`, from ringer's side (received when they go to
/// `ringer_port`), counted.
async fn tshark_messages(tshark: &std::path::Path, pcap: &std::path::Path, ringer_port: u16) -> BTreeMap<Seen, usize> {
    let output = tokio::process::Command::new(tshark)
        .args(["-r", &pcap.display().to_string(), "-Y", "sip", "-T", "fields", "-E", "separator=|"])
        .args(["-e", "ip.src", "-e", "ip.dst", "-e", "udp.dstport", "-e", "sip.Request-Line", "-e", "sip.Status-Line"])
        .args(["-e", "sip.Call-ID"])
        .output()
        .await
        .expect("tshark ran");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut seen = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('|').collect();
        let [source, destination, port, request, status, call_id] = fields[..] else { panic!("tshark line {line:?}") };
        assert_eq!((source, destination), ("127.0.0.1", "127.0.0.1"), "the addresses as on the wire: {line}");
        let start = if request.is_empty() { status } else { request };
        let received = port.parse::<u16>().ok() == Some(ringer_port);
        *seen.entry((received, start.to_owned(), call_id.to_owned())).or_insert(0) += 1;
    }
    seen
}

#[tokio::test]
async fn every_sip_message_reaches_a_hep_capture_server_as_sipp_saw_it() {
    let Some(sipp) = tool(&["sipp"], "sip-tester") else { return };
    let Some(sngrep) = tool(&["sngrep"], "sngrep") else { return };
    let Some(tshark) = tool(&["tshark"], "tshark") else { return };
    let core = start_core(AuthMode::Sandbox, Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (hep, sip, http) = (free_port().port(), free_port(), free_port());
    let pcap = dir.path().join("hep.pcap");
    let capture = tokio::process::Command::new(&sngrep)
        .args(["-N", "-q", "-L", &format!("udp:127.0.0.1:{hep}"), "-O", &pcap.display().to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("sngrep starts");
    let config = format!(
        "[store]\nurl = \"sqlite://{db}\"\n[tas]\nsip_uri = \"sips:tas.example.com:5061\"\n[core]\nendpoint = \"{core}\"\n\
         [http]\nlisten = \"{http}\"\n[voicemail]\ndir = \"{spool}\"\n[sip]\nudp_listen = \"{sip}\"\n\
         [hep]\naddress = \"127.0.0.1:{hep}\"\nagent_id = 42\n\
         [[subscriber]]\nphone_number = \"+4799990701\"\nroute_type = \"loop-mt\"\nmt_prefix = \"22\"\nmt = \"reject 486\"\n",
        db = dir.path().join("ringer.db").display(),
        core = core.endpoint(),
        spool = dir.path().join("spool").display(),
    );
    let path = dir.path().join("ringer.toml");
    std::fs::write(&path, config).expect("config");
    let server = Server::spawn(&["serve", "--config", path.to_str().expect("utf-8")], &[]);
    until_status(&format!("http://{http}/healthz"), 200, "alive").await;

    let log = dir.path().join("sipp-messages.log");
    let output = tokio::process::Command::new(&sipp)
        .args(["-sf", &scenario("uac_reject.xml"), "-t", "u1", "-i", "127.0.0.1"])
        .args(["-p", &free_port().port().to_string(), "-s", "+224799990701", "-m", "3", "-r", "10"])
        .args(["-nostdin", "-timeout", "30s", "-timeout_error", "-trace_msg", "-message_file"])
        .arg(&log)
        .arg(sip.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("SIPp ran");
    assert!(output.status.success(), "SIPp's calls: {}", String::from_utf8_lossy(&output.stdout));

    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = capture.id().expect("sngrep running") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).expect("stop sngrep");
    let _ = tokio::time::timeout(Duration::from_secs(10), capture.wait_with_output()).await.expect("sngrep stopped");

    let sent_and_received = sipp_messages(&std::fs::read_to_string(&log).expect("SIPp's message log"));
    let captured = tshark_messages(&tshark, &pcap, sip.port()).await;
    assert_eq!(
        sent_and_received.values().sum::<usize>(),
        12,
        "INVITE, 100, 486, ACK three times: {sent_and_received:#?}"
    );
    assert_eq!(captured, sent_and_received, "what the capture server got is what SIPp saw");
    server.signal(nix::sys::signal::Signal::SIGTERM);
}
