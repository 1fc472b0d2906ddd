//! `ringer dial`: a handset calls a number through the emulated core's SBC with WebRTC-style
//! media (ICE, DTLS-SRTP), plays a tone or a file, sends DTMF, and records what it hears.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ringer::core::caller::Caller;
use ringer::media::codec::{Codec, SAMPLE_RATE};
use ringer::media::peer::PeerOptions;
use ringer::types::Msisdn;

/// `ringer dial`'s arguments.
#[derive(Debug, clap::Args)]
pub(super) struct DialArgs {
    /// The number to call (E.164).
    #[arg(long, value_name = "E164")]
    to: String,
    /// The calling number.
    #[arg(long, value_name = "E164", default_value = "+4711111111")]
    from: String,
    /// The SBC's access side (UDP); default: that of `ringer serve`'s embedded defaults.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5070")]
    sbc: SocketAddr,
    /// The codec offered: PCMA, PCMU or OPUS.
    #[arg(long, default_value = "PCMA", value_parser = parse_codec)]
    codec: Codec,
    /// What to play: `tone:<Hz>` or a WAV / Ogg-Opus file.
    #[arg(long, value_name = "SOURCE", default_value = "tone:1000")]
    play: String,
    /// How long to play (a file plays to its end or this long, whichever is shorter).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// DTMF keys to send after the audio (e.g. "#").
    #[arg(long, value_name = "KEYS")]
    dtmf: Option<String>,
    /// Listen this long after playing before hanging up.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    linger: Duration,
    /// Write what was heard to this WAV file (8 kHz, 16-bit mono).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Offer a browser-shaped SDP (mid, BUNDLE, msid) instead of the SBC's.
    #[arg(long)]
    browser: bool,
}

fn parse_codec(text: &str) -> Result<Codec, String> {
    Codec::ALL
        .into_iter()
        .find(|codec| codec.name().eq_ignore_ascii_case(text))
        .ok_or_else(|| format!("{text:?}: one of PCMA, PCMU, OPUS"))
}

/// The audio to play, 8 kHz mono.
fn source(play: &str, duration: Duration) -> anyhow::Result<Vec<i16>> {
    let millis = u32::try_from(duration.as_millis()).unwrap_or(u32::MAX);
    let mut samples = match play.strip_prefix("tone:") {
        Some(hz) => {
            let hz: f64 = hz.parse().map_err(|_| anyhow::anyhow!("--play tone:{hz}: not a frequency"))?;
            anyhow::ensure!((20.0..=3900.0).contains(&hz), "--play tone:{hz}: 20 to 3900 Hz at 8 kHz");
            ringer::media::apps::tone(hz, millis, 10000.0)
        }
        None => ringer::media::apps::load_audio(std::path::Path::new(play))?,
    };
    samples.truncate((u64::from(SAMPLE_RATE) * u64::from(millis) / 1000) as usize);
    Ok(samples)
}

/// Places the call; exits 0 when it was answered and audio came back.
pub(super) async fn run(args: DialArgs) -> anyhow::Result<ExitCode> {
    let (to, from) = (Msisdn::parse(&args.to)?, Msisdn::parse(&args.from)?);
    let audio = source(&args.play, args.duration)?;
    ringer::tls::install_crypto_provider();
    let bind = match args.sbc.ip() {
        ip if ip.is_loopback() => ip,
        _ => std::net::IpAddr::from([0, 0, 0, 0]),
    };
    let caller = Caller::start(bind, "ringer-dial").await?;
    let options = PeerOptions { codec: args.codec, browser_shape: args.browser, ..PeerOptions::sbc(bind) };
    println!("calling {to} from {from} through the SBC at {} ({}, WebRTC)", args.sbc, args.codec);
    let mut connected = match caller.dial(args.sbc, &from, &to, options, Duration::from_secs(30)).await {
        Ok(connected) => connected,
        Err(error) => {
            println!("{error}");
            caller.shutdown();
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("answered; ICE and DTLS up after {} ms", connected.setup.as_millis());
    // Listen all along, while playing, sending the keys and lingering.
    let mut listener = connected.peer.take_listener();
    let call = connected.call.clone();
    let listening = tokio::spawn(async move {
        let mut heard = Vec::new();
        while !call.is_ended() {
            heard.extend(listener.heard(Duration::from_millis(100)).await);
        }
        heard
    });
    let talking = async {
        connected.peer.play(&audio).await;
        for key in args.dtmf.as_deref().unwrap_or_default().chars() {
            connected.peer.send_dtmf(key).await;
        }
        tokio::time::sleep(args.linger).await;
    };
    let hung_up_by_peer = tokio::select! {
        () = talking => false,
        reason = connected.call.ended() => {
            println!("ended by the other side: {reason}");
            true
        }
    };
    if !hung_up_by_peer {
        match connected.call.hangup().await {
            Ok(status) => println!("hung up: BYE answered {status}"),
            Err(error) => println!("hang-up failed: {error}"),
        }
    }
    let heard = listening.await.unwrap_or_default();
    connected.peer.close().await;
    caller.shutdown();
    let seconds = heard.len() as f64 / f64::from(SAMPLE_RATE);
    let loud = heard.iter().filter(|s| s.unsigned_abs() > 500).count() as f64 / f64::from(SAMPLE_RATE);
    println!("heard {seconds:.1} s of audio ({loud:.1} s above -36 dBFS)");
    if let Some(path) = &args.record {
        ringer::media::apps::write_wav(path, &heard)?;
        println!("recorded to {}", path.display());
    }
    Ok(if loud > 0.0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
