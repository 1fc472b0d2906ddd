//! `ringer call`: the TAS places one call through the core (route type Ingress), as the
//! library's [`ringer::tas::Tas::call`] does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use ringer::config::serve::ServeConfig;
use ringer::sip::uac::Progress;
use ringer::types::Msisdn;

/// `ringer call`'s arguments.
#[derive(Debug, clap::Args)]
pub(super) struct CallArgs {
    /// The number to call (E.164), registered with route type ingress.
    #[arg(long, value_name = "E164")]
    to: String,
    /// The number the call comes from; default: the first subscriber in the config.
    #[arg(long, value_name = "E164")]
    from: Option<String>,
    /// The TAS config (its sip.core_uri, certificates and CA); default: the embedded defaults
    /// of a running `ringer serve` (core at sips:localhost:5071, CA in var/certs).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How long to hold the call once answered.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    hold: Duration,
}

/// Places the call, holds it, hangs up; exits 0 when it was answered.
pub(super) async fn run(args: CallArgs) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => ServeConfig::load(path)?,
        None => embedded_client_config()?,
    };
    let to = Msisdn::parse(&args.to)?;
    let from = match &args.from {
        Some(from) => Msisdn::parse(from)?,
        None => config
            .subscribers
            .first()
            .map(|subscriber| subscriber.phone_number.clone())
            .ok_or_else(|| anyhow::anyhow!("--from is needed: the config lists no subscriber"))?,
    };
    // A one-shot call listens on free ports, beside a TAS that may hold the configured ones.
    let any_port = |addr: Option<SocketAddr>| addr.map(|addr| SocketAddr::new(addr.ip(), 0));
    config.sip.tls_listen = any_port(config.sip.tls_listen);
    config.sip.tcp_listen = any_port(config.sip.tcp_listen);
    config.sip.udp_listen = any_port(config.sip.udp_listen);
    let tas = ringer::tas::start_sip(&config).await?;
    let address = match config.sip.media_address {
        address if address.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        address => address,
    };
    let offer = ringer::sdp::plain_audio_offer(1, address, 9, &[8, 0]);
    let mut call = tas.call(&to, &from, Bytes::from(offer.to_string())).await?;
    println!("calling {to} from {from} through {}", config.sip.core_uri.as_deref().unwrap_or("?"));
    loop {
        match call.next().await {
            Progress::Provisional(response) => println!("{} {}", response.status, response.reason),
            Progress::Answered(dialog, response) => {
                println!(
                    "{} {}: answered, holding for {}",
                    response.status,
                    response.reason,
                    humantime::format_duration(args.hold)
                );
                dialog.ack(None)?;
                tokio::select! {
                    reason = dialog.ended() => println!("ended: {reason}"),
                    () = tokio::time::sleep(args.hold) => {
                        let status = dialog.hangup().await?;
                        println!("hung up: BYE answered {status}");
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            Progress::Failed(response) => {
                println!("{} {}", response.status, response.reason);
                if let Some(warning) = response.headers.get("Warning") {
                    println!("Warning: {warning}");
                }
                return Ok(ExitCode::FAILURE);
            }
            Progress::Cancelled => return Ok(ExitCode::FAILURE),
            Progress::TimedOut => {
                println!("no answer from the core (timeout)");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
}

/// What `ringer serve`'s embedded defaults use, for a call through their emulated core.
fn embedded_client_config() -> anyhow::Result<ServeConfig> {
    let dir = Path::new(super::serve::EMBEDDED_CERT_DIR);
    let files = ringer::tls::devcert::DevCertificateFiles {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    anyhow::ensure!(
        files.ca_cert.exists(),
        "{} not found: start `ringer serve` (embedded defaults) first, or pass --config",
        files.ca_cert.display()
    );
    let mut config = ServeConfig::embedded("http://127.0.0.1:1".into(), &files);
    config.sip.tcp_listen = None;
    config.sip.udp_listen = None;
    config.sip.core_ca_file = Some(files.ca_cert.clone());
    config.sip.core_uri = Some(format!("sips:localhost:{}", ringer::lab::LabPorts::EMBEDDED.interconnect));
    Ok(config)
}
