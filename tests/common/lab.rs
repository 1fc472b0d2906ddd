//! The whole call path on loopback ([`ringer::lab`]) with subscribers and handsets written
//! the way a user configures them.

use std::time::Duration;

use bytes::Bytes;
use ringer::config::core::{HandsetConfig, HandsetMode};
use ringer::config::serve::{CallsConfig, SubscriberConfig};
use ringer::core::sbc::Sbc;
use ringer::sip::uac::{OutgoingCall, Progress};
use ringer::tls::devcert::DevCertificateFiles;

use super::{msisdn, poll_until};

/// An SDP offer as SIPp or a desk phone sends it.
pub(crate) const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n";

/// A running lab and the folder of its certificates.
pub(crate) struct Lab {
    pub lab: ringer::lab::Lab,
    pub certs: DevCertificateFiles,
    pub dir: tempfile::TempDir,
    /// The development CA and certificate the TAS started with, to issue renewals from.
    pub generated: ringer::tls::devcert::DevCertificates,
}

impl std::ops::Deref for Lab {
    type Target = ringer::lab::Lab;
    fn deref(&self) -> &Self::Target {
        &self.lab
    }
}

/// A handset that rings 50 ms before acting.
pub(crate) fn handset(number: &str, mode: HandsetMode) -> HandsetConfig {
    HandsetConfig { number: msisdn(number), mode, ring_time: Duration::from_millis(50), hang_up_after: None }
}

/// A `[[subscriber]]` in TOML; `mo`/`mt` are behaviours (`"\"loop\""`, `{ action = ... }`) or empty.
pub(crate) fn subscriber(
    number: &str,
    route_type: &str,
    mo_prefix: &str,
    mt_prefix: &str,
    mo: &str,
    mt: &str,
) -> String {
    let mut text = format!("[[subscriber]]\nphone_number = \"{number}\"\nroute_type = \"{route_type}\"\n");
    for (key, value, quoted) in
        [("mo_prefix", mo_prefix, true), ("mt_prefix", mt_prefix, true), ("mo", mo, false), ("mt", mt, false)]
    {
        match (value.is_empty(), quoted) {
            (true, _) => {}
            (false, true) => text += &format!("{key} = \"{value}\"\n"),
            (false, false) => text += &format!("{key} = {value}\n"),
        }
    }
    text
}

#[derive(serde::Deserialize)]
struct Subscribers {
    #[serde(default)]
    subscriber: Vec<SubscriberConfig>,
}

impl Lab {
    /// The lab with `subscribers` (TOML) and `handsets`, registered and ready.
    pub(crate) async fn start(subscribers: &[String], handsets: Vec<HandsetConfig>) -> Lab {
        Self::start_with(subscribers, handsets, Duration::from_secs(30)).await
    }

    /// As [`Lab::start`], with the SBC's Fallback no-answer time.
    pub(crate) async fn start_with(
        subscribers: &[String],
        handsets: Vec<HandsetConfig>,
        fallback_no_answer: Duration,
    ) -> Lab {
        Self::start_routed(subscribers, handsets, fallback_no_answer, Vec::new()).await
    }

    /// As [`Lab::start_with`], with SBC routes to outside callees.
    pub(crate) async fn start_routed(
        subscribers: &[String],
        handsets: Vec<HandsetConfig>,
        fallback_no_answer: Duration,
        routes: Vec<ringer::config::core::SbcRoute>,
    ) -> Lab {
        Self::start_full(subscribers, handsets, fallback_no_answer, routes, Duration::from_secs(30)).await
    }

    /// Every setting the tests vary.
    pub(crate) async fn start_full(
        subscribers: &[String],
        handsets: Vec<HandsetConfig>,
        fallback_no_answer: Duration,
        routes: Vec<ringer::config::core::SbcRoute>,
        media_timeout: Duration,
    ) -> Lab {
        Self::start_media(subscribers, handsets, fallback_no_answer, routes, media_timeout, [127, 0, 0, 1].into()).await
    }

    /// As [`Lab::start_full`], with the TAS's media on `media_address`.
    pub(crate) async fn start_media(
        subscribers: &[String],
        handsets: Vec<HandsetConfig>,
        fallback_no_answer: Duration,
        routes: Vec<ringer::config::core::SbcRoute>,
        media_timeout: Duration,
        media_address: std::net::IpAddr,
    ) -> Lab {
        Self::start_adjusted(subscribers, handsets, routes, |config| {
            config.fallback_no_answer = fallback_no_answer;
            config.media_timeout = media_timeout;
            config.media_address = media_address;
        })
        .await
    }

    /// The lab with `subscribers`, `handsets` and SBC `routes`, its config changed by `adjust`
    /// (ports, a proxy in the path...) before it starts.
    pub(crate) async fn start_adjusted(
        subscribers: &[String],
        handsets: Vec<HandsetConfig>,
        routes: Vec<ringer::config::core::SbcRoute>,
        adjust: impl FnOnce(&mut ringer::lab::LabConfig),
    ) -> Lab {
        let dir = tempfile::tempdir().expect("temp dir");
        let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        let generated = ringer::tls::devcert::generate(&names).expect("certs");
        let certs = generated.write_to(dir.path()).expect("write certs");
        let parsed: Subscribers = toml::from_str(&subscribers.join("\n")).expect("subscriber TOML");
        let mut config = ringer::lab::LabConfig {
            ports: ringer::lab::LabPorts::ANY,
            subscribers: parsed.subscriber,
            handsets,
            fallback_no_answer: Duration::from_secs(30),
            calls: CallsConfig::default(),
            routes,
            media_timeout: Duration::from_secs(30),
            voicemail_dir: dir.path().join("voicemail"),
            voicemail: Default::default(),
            mailbox_store: None,
            media_address: [127, 0, 0, 1].into(),
            proxy: None,
            sbc_extensions: Default::default(),
            call_records_file: Some(dir.path().join("calls.jsonl")),
        };
        adjust(&mut config);
        let lab = ringer::lab::Lab::start(config, &certs).await.expect("lab starts");
        assert!(poll_until(Duration::from_secs(10), || lab.registered()).await, "subscribers registered");
        Lab { lab, certs, dir, generated }
    }

    /// The call records the TAS has written so far, one JSON object per call, oldest first.
    pub(crate) fn call_records(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.path().join("calls.jsonl")).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).expect("each line one JSON object")).collect()
    }

    /// Waits until `count` call records are written (a call's record comes once it has ended).
    pub(crate) async fn call_records_when(&self, count: usize) -> Vec<serde_json::Value> {
        assert!(
            poll_until(Duration::from_secs(10), || self.call_records().len() >= count).await,
            "{count} call records expected, written: {:?}",
            self.call_records()
        );
        self.call_records()
    }

    pub(crate) fn sbc(&self) -> &Sbc {
        self.lab.sbc().expect("SBC configured")
    }

    /// Alice (`from`) calls `to` through the SBC with an SDP offer.
    pub(crate) fn call(&self, from: &str, to: &str) -> OutgoingCall {
        self.call_offering(from, to, OFFER)
    }

    /// Alice calls with `offer`.
    pub(crate) fn call_offering(&self, from: &str, to: &str, offer: &str) -> OutgoingCall {
        self.lab.call(&msisdn(from), &msisdn(to), Bytes::from(offer.to_owned())).expect("INVITE sent")
    }

    /// Waits until no call, transaction or leg 2 session is left anywhere.
    pub(crate) async fn settled(&self) -> bool {
        poll_until(Duration::from_secs(10), || self.lab.live_state() == 0).await
    }

    /// A summary of what is left, for failure messages.
    pub(crate) fn leftovers(&self) -> String {
        let tas = &self.lab.tas.endpoint;
        format!(
            "sbc live {} sessions {}; tas dialogs {} pending {} clients {}; alice dialogs {} clients {}",
            self.sbc().live_state(),
            self.sbc().open_sessions(),
            tas.live_dialogs(),
            tas.pending_invites(),
            tas.clients().in_progress(),
            self.lab.alice.endpoint().live_dialogs(),
            self.lab.alice.endpoint().clients().in_progress()
        )
    }
}

/// Follows `call` to its final answer, skipping provisionals.
pub(crate) async fn final_of(call: &mut OutgoingCall) -> Progress {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), call.next()).await {
            Ok(Progress::Provisional(_)) => continue,
            Ok(progress) => return progress,
            Err(_) => panic!("no final response within 20 s"),
        }
    }
}
