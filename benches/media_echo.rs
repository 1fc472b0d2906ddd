//! Media benchmark: N concurrent WebRTC echo calls (ICE, DTLS-SRTP, PCMA or Opus) held for a
//! while against a `ringer serve` process, as the operator's SBC would place them (MT prefix in
//! the Request-URI, an SBC-shaped offer). For each N it prints the calls that held without a
//! media timeout and under 1% packet loss, ringer's CPU and peak memory per call, and setup
//! times (INVITE to ICE and DTLS up, and to the first echoed SRTP packet), median and p99.
//!
//! `cargo bench --bench media_echo -- [--calls 50,100,200] [--hold 30s] [--codec PCMA|OPUS]`
//! (bench/media-echo.sh runs it). The callers run in this process, ringer in its own, so its
//! /proc figures are its own; both share this machine's cores. `RINGER_BIN` runs another ringer
//! binary (or a wrapper that runs one, as under a heap profiler) in place of this build's.

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringer::core::caller::Caller;
use ringer::media::codec::{Codec, FRAME};
use ringer::media::peer::PeerOptions;
use ringer::types::Msisdn;

const SUBSCRIBER: &str = "+4799990001";
const PREFIX: &str = "27";

struct Options {
    calls: Vec<usize>,
    hold: Duration,
    codec: Codec,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this as a smoke test.
    let mut options = match args.iter().any(|a| a == "--bench") {
        true => Options { calls: vec![50, 100, 200], hold: Duration::from_secs(30), codec: Codec::Pcma },
        false => Options { calls: vec![2], hold: Duration::from_secs(2), codec: Codec::Pcma },
    };
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    if let Some(calls) = value("--calls") {
        options.calls = calls.split(',').filter_map(|n| n.trim().parse().ok()).collect();
    }
    if let Some(hold) = value("--hold") {
        options.hold = humantime::parse_duration(&hold).unwrap_or(options.hold);
    }
    if let Some(codec) = value("--codec") {
        options.codec = Codec::ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(&codec)).unwrap_or(Codec::Pcma);
    }
    options
}

/// CPU seconds (user + system) and peak resident memory (KiB) of process `pid`.
fn process_figures(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<f64>().ok()).sum();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, peak)
}

fn current_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// What one call measured.
struct CallResult {
    connected: Duration,
    first_echo: Option<Duration>,
    sent: u64,
    received: u64,
    dropped_early: bool,
}

async fn one_call(
    caller: Arc<Caller>,
    ringer: SocketAddr,
    codec: Codec,
    frames: Arc<Vec<Vec<u8>>>,
) -> Result<CallResult, String> {
    let started = Instant::now();
    let from = Msisdn::parse("+4711111111").map_err(|e| e.to_string())?;
    let to = Msisdn::parse(&format!("+{PREFIX}{}", &SUBSCRIBER[1..])).map_err(|e| e.to_string())?;
    let options = PeerOptions { codec, ..PeerOptions::sbc(IpAddr::from([127, 0, 0, 1])) };
    let mut connected =
        caller.dial(ringer, &from, &to, options, Duration::from_secs(30)).await.map_err(|e| e.to_string())?;
    let connected_after = started.elapsed();
    let mut listener = connected.peer.take_listener();
    let call = connected.call.clone();
    let counting = tokio::spawn(async move {
        let mut first = None;
        let mut packets = 0u64;
        while !call.is_ended() {
            if listener.next_payload(Duration::from_millis(200)).await.is_none() {
                if listener.is_closed() {
                    break;
                }
                continue;
            }
            first.get_or_insert_with(|| started.elapsed());
            packets += 1;
        }
        (first, packets)
    });
    let sent = frames.len() as u64;
    tokio::select! {
        () = connected.peer.play_encoded(&frames) => {}
        _ = connected.call.ended() => {}
    }
    let dropped_early = connected.call.is_ended();
    // Let the last echoes arrive, then hang up (which ends the counting).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = connected.call.hangup().await;
    let (first_echo, received) = counting.await.unwrap_or((None, 0));
    connected.peer.close().await;
    Ok(CallResult { connected: connected_after, first_echo, sent, received, dropped_early })
}

fn ringer_config(dir: &std::path::Path, port: u16) -> String {
    format!(
        "[tas]\nsip_uri = \"sips:localhost:{tls}\"\n[core]\nendpoint = \"http://127.0.0.1:1\"\n\
         [sip]\nudp_listen = \"127.0.0.1:{port}\"\nmedia_address = \"127.0.0.1\"\n\
         [media]\nbind_address = \"127.0.0.1\"\ntimeout = \"5s\"\n[voicemail]\ndir = \"{vm}\"\n\
         [[subscriber]]\nphone_number = \"{SUBSCRIBER}\"\nroute_type = \"loop-mt\"\nmt_prefix = \"{PREFIX}\"\nmt = \"answer echo\"\n",
        tls = port + 1,
        vm = dir.join("voicemail").display(),
    )
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(run(options));
}

async fn run(options: Options) {
    ringer::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("free port").port();
    let config = dir.path().join("ringer.toml");
    std::fs::write(&config, ringer_config(dir.path(), port)).expect("config");
    let binary = std::env::var_os("RINGER_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_ringer").into());
    let mut server = tokio::process::Command::new(binary)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RINGER_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("ringer serve starts");
    let pid = server.id().expect("pid");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ringer = SocketAddr::from(([127, 0, 0, 1], port));
    let caller = Arc::new(Caller::start(IpAddr::from([127, 0, 0, 1]), "media-bench").await.expect("caller"));
    println!(
        "media_echo: {} echo calls over WebRTC (ICE, DTLS-SRTP), held {}, against ringer pid {pid}",
        options.codec,
        humantime::format_duration(options.hold)
    );
    println!(
        "{:>6} {:>6} {:>8} {:>9} {:>12} {:>12} {:>13} {:>13} {:>13} {:>13}",
        "calls",
        "held",
        "loss %",
        "timeouts",
        "CPU %/call",
        "KiB/call",
        "DTLS p50 ms",
        "DTLS p99 ms",
        "echo p50 ms",
        "echo p99 ms"
    );
    // The tone is encoded once: the callers' codec work stays out of the figures.
    let tone = ringer::media::apps::tone(1000.0, options.hold.as_millis() as u32, 9000.0);
    let mut encoder = options.codec.encoder().expect("encoder");
    let frames: Arc<Vec<Vec<u8>>> =
        Arc::new(tone.chunks(FRAME).map(|frame| encoder.encode(frame).expect("encode")).collect());
    for &calls in &options.calls {
        let rss_before = current_rss(pid);
        let (cpu_before, _) = process_figures(pid);
        let wall = Instant::now();
        // Calls arrive over a second or so, as a busy SBC would send them.
        let spacing = Duration::from_millis(1000 / calls.max(1) as u64).max(Duration::from_millis(2));
        let mut tasks = Vec::with_capacity(calls);
        for _ in 0..calls {
            tasks.push(tokio::spawn(one_call(caller.clone(), ringer, options.codec, frames.clone())));
            tokio::time::sleep(spacing).await;
        }
        // Peak resident memory while every call is up.
        let mut rss_peak = 0;
        let sampling = async {
            loop {
                rss_peak = rss_peak.max(current_rss(pid));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        let results = tokio::select! {
            results = futures_join(tasks) => results,
            () = sampling => unreachable!("sampling never ends"),
        };
        let elapsed = wall.elapsed().as_secs_f64();
        let (cpu_after, _) = process_figures(pid);
        let mut connected = Vec::new();
        let mut first_echo = Vec::new();
        let (mut sent, mut received, mut timeouts, mut held) = (0u64, 0u64, 0usize, 0usize);
        for result in results.iter().flatten() {
            connected.push(result.connected);
            first_echo.extend(result.first_echo);
            sent += result.sent;
            received += result.received;
            timeouts += usize::from(result.dropped_early);
            let loss = 1.0 - result.received as f64 / result.sent.max(1) as f64;
            held += usize::from(!result.dropped_early && loss < 0.01);
        }
        let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        connected.sort();
        first_echo.sort();
        let loss = 100.0 * (1.0 - received as f64 / sent.max(1) as f64);
        let cpu_per_call = 100.0 * (cpu_after - cpu_before) / elapsed / calls as f64;
        let memory_per_call = rss_peak.saturating_sub(rss_before) as f64 / calls as f64;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{calls:>6} {held:>6} {loss:>8.2} {timeouts:>9} {cpu_per_call:>12.2} {memory_per_call:>12.0} {:>13.0} {:>13.0} {:>13.0} {:>13.0}",
            ms(percentile(&connected, 0.5)),
            ms(percentile(&connected, 0.99)),
            ms(percentile(&first_echo, 0.5)),
            ms(percentile(&first_echo, 0.99)),
        );
        if let Some(first) = failures.first() {
            println!("       {} calls failed to set up; first: {first}", failures.len());
        }
        // Let ringer release the calls before the next step.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (cpu, peak) = process_figures(pid);
    println!("ringer in all: {cpu:.1} s CPU, peak resident {} MiB", peak / 1024);
    let _ = server.start_kill();
    let _ = server.wait().await;
}

/// Awaits every task, in order.
async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(value) = task.await {
            out.push(value);
        }
    }
    out
}
