//! `ringer conformance`: plays the operator core against a TAS and prints a verdict per case.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use ringer::call::action::Action;
use ringer::config::serve::ServeConfig;
use ringer::conformance::expect::Expectation;
use ringer::conformance::{self, HarnessConfig};
use ringer::types::{Direction, Msisdn, Prefix, Registration, RouteType, SipsUri};

/// `ringer conformance`'s arguments.
#[derive(Debug, clap::Args)]
pub(super) struct ConformanceArgs {
    /// The TAS under test, as it registers: `sips:host:port`, or `sips:host` for DNS SRV.
    /// Default: `tas.sip_uri` of --config.
    #[arg(long, value_name = "SIPS_URI")]
    target: Option<String>,
    /// The CA the TAS certificate must chain to; default: the system's roots.
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// A ringer-style TAS config whose [[subscriber]] entries (number, route type, prefixes)
    /// say what the TAS registers.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A subscriber the TAS serves: `+E164,route_type[,mo=PREFIX][,mt=PREFIX]`, and what the
    /// TAS is meant to do with its calls, `[,expect-mo=WHAT][,expect-mt=WHAT]` where WHAT is
    /// `loop`, `forward:+E164`, `answer`, `reject` or `reject:CODE` (repeatable). With a
    /// declaration any other outcome fails the call case.
    #[arg(long = "subscriber", value_name = "SPEC")]
    subscribers: Vec<String>,
    /// Where the harness takes leg 3 over TLS: the core address the TAS sends its calls to.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5071")]
    listen: SocketAddr,
    /// The harness's certificate for that listener (PEM chain); default: a development
    /// certificate made for the run (a TAS that verifies the core will refuse it).
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// Its key.
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// Wait this long for the TAS to call each Ingress subscriber (it starts those calls);
    /// without it the Ingress cases are skipped.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    ingress_wait: Option<std::time::Duration>,
    /// Also serve SipBreakoutService here (plain HTTP/2, sandbox authentication) for the TAS
    /// to register against; its registrations then route the calls, and their fields and
    /// refreshes are checked.
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<SocketAddr>,
    /// The time to live the harness's SipBreakoutService grants (the TAS must refresh within).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    grpc_ttl: std::time::Duration,
    /// How long the TAS has to register every subscriber.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    grpc_wait: std::time::Duration,
    /// After the other cases, wait this long for DeleteRegistration of each subscriber: stop
    /// the TAS when the harness says so. Without it the delete cases are skipped.
    #[arg(long, value_name = "DURATION", requires = "grpc_listen", value_parser = humantime::parse_duration)]
    grpc_delete_wait: Option<std::time::Duration>,
    /// How long after its INVITE a call may go without a final response before the harness
    /// cancels it and fails the case.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    answer_wait: std::time::Duration,
    /// Run only this case, or the cases a prefix ending in `*` names (repeatable), e.g.
    /// `--only 'call.race.*' --only tls.certificate`.
    #[arg(long, value_name = "CASE")]
    only: Vec<String>,
    /// Also write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// What a `--subscriber` says: the registration, and the outcomes declared per direction.
type Declared = (Registration, Vec<(Direction, Expectation)>);

/// `+E164,route_type[,mo=PREFIX][,mt=PREFIX][,expect-mo=WHAT][,expect-mt=WHAT]`.
fn parse_subscriber(text: &str) -> anyhow::Result<Declared> {
    let mut parts = text.split(',').map(str::trim);
    let number = Msisdn::parse(parts.next().unwrap_or_default())?;
    let route: RouteType = parts
        .next()
        .ok_or_else(|| anyhow::anyhow!("--subscriber {text}: a route type after the number"))?
        .parse()
        .map_err(|error| anyhow::anyhow!("--subscriber {text}: {error}"))?;
    let (mut mo_prefix, mut mt_prefix) = (None, None);
    let mut expectations = Vec::new();
    for part in parts {
        let expect = |direction, what: &str| -> anyhow::Result<(Direction, Expectation)> {
            Ok((direction, what.parse().map_err(|error| anyhow::anyhow!("--subscriber {text}: {error}"))?))
        };
        match part.split_once('=') {
            Some(("mo", prefix)) => mo_prefix = Some(Prefix::parse(prefix)?),
            Some(("mt", prefix)) => mt_prefix = Some(Prefix::parse(prefix)?),
            Some(("expect-mo", what)) => expectations.push(expect(Direction::Originating, what)?),
            Some(("expect-mt", what)) => expectations.push(expect(Direction::Terminating, what)?),
            _ => anyhow::bail!(
                "--subscriber {text}: {part:?} is not mo=PREFIX, mt=PREFIX, expect-mo=WHAT or expect-mt=WHAT"
            ),
        }
    }
    // The harness puts the target in; this placeholder never leaves the process.
    let placeholder = SipsUri::parse("sips:placeholder.invalid")?;
    let registration =
        Registration { phone_number: Some(number), sip_uri: placeholder, route_type: route, mo_prefix, mt_prefix };
    Ok((registration, expectations))
}

/// What a ringer TAS config says its subscribers' calls get: the first action of each
/// behaviour (an announcement then refusal counts as the refusal).
fn configured_expectations(config: &ServeConfig) -> HashMap<(Msisdn, Direction), Expectation> {
    let mut expectations = HashMap::new();
    for subscriber in &config.subscribers {
        for direction in [Direction::Originating, Direction::Terminating] {
            let Some(behaviour) = subscriber.behaviour(direction) else { continue };
            let expectation = match behaviour.action {
                Action::Loop => Expectation::Loop,
                Action::Forward(number) => Expectation::Forward(number),
                Action::Answer(_) => Expectation::Answer,
                Action::Reject { status, .. } | Action::Announce { status, .. } => {
                    Expectation::Reject(Some(status.as_u16()))
                }
            };
            expectations.insert((subscriber.phone_number.clone(), direction), expectation);
        }
    }
    expectations
}

/// Runs the harness; exits 0 when every case passed or was skipped.
pub(super) async fn run(args: ConformanceArgs) -> anyhow::Result<ExitCode> {
    let file = args.config.as_deref().map(ServeConfig::load).transpose()?;
    let target = match (&args.target, &file) {
        (Some(target), _) => SipsUri::parse(target)?,
        (None, Some(config)) => config.tas.sip_uri.clone(),
        (None, None) => anyhow::bail!("--target (or --config with tas.sip_uri) is needed"),
    };
    let mut subscribers: Vec<Registration> = file.as_ref().map(ServeConfig::registrations).unwrap_or_default();
    let mut expectations = file.as_ref().map(configured_expectations).unwrap_or_default();
    for spec in &args.subscribers {
        let (registration, declared) = parse_subscriber(spec)?;
        if let Some(number) = &registration.phone_number {
            expectations.extend(declared.into_iter().map(|(direction, what)| ((number.clone(), direction), what)));
        }
        subscribers.push(registration);
    }
    anyhow::ensure!(!subscribers.is_empty(), "no subscriber: give --subscriber or --config");
    let scratch = tempfile::tempdir()?;
    let (cert_file, key_file) = match (args.cert, args.key) {
        (Some(cert), Some(key)) => (cert, key),
        _ => {
            let names = ["localhost".to_owned(), args.listen.ip().to_string()];
            let files = ringer::tls::devcert::generate(&names)?.write_to(scratch.path())?;
            (files.server_cert, files.server_key)
        }
    };
    let config = HarnessConfig {
        target,
        ca_file: args.ca,
        subscribers,
        interconnect: args.listen,
        cert_file,
        key_file,
        ingress_wait: args.ingress_wait,
        answer_wait: args.answer_wait,
        only: args.only,
        expectations,
        grpc: args.grpc_listen.map(|listen| conformance::GrpcSide {
            listen,
            time_to_live: args.grpc_ttl,
            wait: args.grpc_wait,
            delete_wait: args.grpc_delete_wait,
        }),
        media_address: match args.listen.ip() {
            ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
            ip => ip,
        },
    };
    let quiet = args.json;
    let delete_wait = args.grpc_delete_wait;
    let told_to_stop = std::sync::atomic::AtomicBool::new(false);
    let report = conformance::run(config, move |case| {
        if case.starts_with("grpc.delete.") && !told_to_stop.swap(true, std::sync::atomic::Ordering::Relaxed) {
            let wait = delete_wait.map(|wait| humantime::format_duration(wait).to_string()).unwrap_or_default();
            // Said even with --json: the operator has to act on it.
            eprintln!("stop the TAS now: waiting up to {wait} for it to delete its registrations");
        }
        if !quiet {
            eprintln!("running {case}");
        }
    })
    .await?;
    if let Some(path) = &args.junit {
        std::fs::write(path, report.junit()).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    }
    match args.json {
        true => println!("{}", report.json()),
        false => print!("{}", report.table()),
    }
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
