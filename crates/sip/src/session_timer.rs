//! Session timers (RFC 4028): agreeing on a session interval and who refreshes it, on either
//! side of an INVITE or UPDATE, and the deadline a dialog keeps from it. Pure functions over
//! headers; the dialog runs the timer (see `dialog.rs`).

use std::time::Duration;

use super::message::header::{lists_option, MinSe, Refresher, SessionExpires, TypedHeader};
use super::message::Headers;

/// How a user agent takes part in an extension (100rel, timer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Support {
    /// Not at all: a request that requires it is refused with 420.
    Off,
    /// Used when the peer asks for it or supports it.
    #[default]
    Supported,
    /// Asked of every peer: requests sent require it, requests that do not support it get 421.
    Required,
}

/// Session timer settings of a user agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimerConfig {
    /// Whether and how session timers are used.
    pub support: Support,
    /// The session interval asked for in requests, and granted when a request asks none.
    pub interval: Duration,
    /// The smallest interval accepted (Min-SE); smaller requests get 422.
    pub min_se: Duration,
}

impl Default for SessionTimerConfig {
    /// RFC 4028's recommendations: 1800 s asked, 90 s the least.
    fn default() -> Self {
        Self { support: Support::Supported, interval: Duration::from_secs(1800), min_se: Duration::from_secs(90) }
    }
}

/// What one side agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The session interval.
    pub interval: Duration,
    /// Whether this side refreshes (else it watches for the peer's refreshes).
    pub we_refresh: bool,
}

impl Agreed {
    /// When this side acts, counted from the last refresh: a refresher refreshes at half the
    /// interval; the other side gives up at the interval less a third or 32 s, whichever is
    /// smaller (RFC 4028 §10), and sends BYE.
    pub fn next_action(&self) -> Duration {
        match self.we_refresh {
            true => self.interval / 2,
            false => self.interval - (self.interval / 3).min(Duration::from_secs(32)),
        }
    }
}

/// How a UAS answers the session timer part of an INVITE or UPDATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UasTimer {
    /// No session timer for this session.
    None,
    /// The interval asked is below our Min-SE: answer 422 with this Min-SE (seconds).
    TooSmall(u32),
    /// Agreed: the 2xx carries `session_expires`, and `Require: timer` when `require`.
    Agreed {
        /// The Session-Expires value of the 2xx.
        session_expires: SessionExpires,
        /// Whether the 2xx carries `Require: timer` (the UAC supports it and refreshes).
        require: bool,
        /// What this side does.
        agreed: Agreed,
    },
}

/// The UAS's part (RFC 4028 §9) for a request with `headers`, under `config`.
pub fn as_uas(headers: &Headers, config: &SessionTimerConfig) -> UasTimer {
    if config.support == Support::Off {
        return UasTimer::None;
    }
    let uac_supports = lists_option(headers, "Supported", "timer") || lists_option(headers, "Require", "timer");
    let asked = headers.parsed::<SessionExpires>();
    let min_se = config.min_se.as_secs() as u32;
    let their_min = headers.parsed::<MinSe>().map_or(0, |MinSe(seconds)| seconds);
    let seconds = match asked {
        Some(asked) if asked.seconds < min_se => return UasTimer::TooSmall(min_se),
        Some(asked) => asked.seconds,
        // The UAC asked for none: the UAS may still insert one (§9).
        None => (config.interval.as_secs() as u32).max(their_min).max(min_se),
    };
    // The UAC's choice stands; otherwise the UAC refreshes when it can, else we do.
    let refresher = match (asked.and_then(|asked| asked.refresher), uac_supports) {
        (Some(refresher), _) => refresher,
        (None, true) => Refresher::Uac,
        (None, false) => Refresher::Uas,
    };
    // A UAC that does not support the extension cannot be made to refresh.
    let refresher = if uac_supports { refresher } else { Refresher::Uas };
    UasTimer::Agreed {
        session_expires: SessionExpires { seconds, refresher: Some(refresher) },
        require: uac_supports && refresher == Refresher::Uac,
        agreed: Agreed { interval: Duration::from_secs(u64::from(seconds)), we_refresh: refresher == Refresher::Uas },
    }
}

/// The session timer headers of a request a UAC sends (INVITE, refreshing re-INVITE or UPDATE),
/// asking for `interval`; none when timers are off.
pub fn request_headers(
    config: &SessionTimerConfig,
    interval: Duration,
    refresher: Option<Refresher>,
) -> Vec<(&'static str, String)> {
    match config.support {
        Support::Off => Vec::new(),
        support => {
            let expires = SessionExpires { seconds: interval.as_secs() as u32, refresher };
            let tag = if support == Support::Required { "Require" } else { "Supported" };
            vec![
                (tag, "timer".into()),
                (SessionExpires::NAME, expires.to_string()),
                (MinSe::NAME, MinSe(config.min_se.as_secs() as u32).to_string()),
            ]
        }
    }
}

/// What a UAC learns from the 2xx to its INVITE or UPDATE (RFC 4028 §7.2): the agreed interval
/// and refresher, or none when the 2xx carries no Session-Expires (the UAS does not do timers).
pub fn as_uac(response: &Headers, config: &SessionTimerConfig) -> Option<Agreed> {
    if config.support == Support::Off {
        return None;
    }
    let granted = response.parsed::<SessionExpires>()?;
    // Below our own Min-SE is not an interval we keep to (it would mean refreshing every few
    // hundred milliseconds for a peer that grants 1 s).
    let interval = Duration::from_secs(u64::from(granted.seconds)).max(config.min_se);
    Some(Agreed {
        interval,
        // A Session-Expires without refresher leaves refreshing to the UAC (§7.2).
        we_refresh: granted.refresher != Some(Refresher::Uas),
    })
}

/// The interval to ask again after a 422 (RFC 4028 §7.4): the larger of its Min-SE and `asked`.
pub fn after_too_small(response: &Headers, asked: Duration) -> Option<Duration> {
    let MinSe(min_se) = response.parsed()?;
    let retry = Duration::from_secs(u64::from(min_se));
    (retry > asked).then_some(retry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&str, &str)]) -> Headers {
        let mut headers = Headers::new();
        for (name, value) in lines {
            headers.push(name, *value);
        }
        headers
    }

    fn config(min_se: u64) -> SessionTimerConfig {
        SessionTimerConfig { min_se: Duration::from_secs(min_se), ..SessionTimerConfig::default() }
    }

    fn granted(timer: UasTimer) -> (String, bool, Agreed) {
        match timer {
            UasTimer::Agreed { session_expires, require, agreed } => (session_expires.to_string(), require, agreed),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_uas_grants_what_is_asked_and_names_the_refresher() {
        let (expires, require, agreed) =
            granted(as_uas(&headers(&[("Supported", "timer"), ("Session-Expires", "600")]), &config(90)));
        assert_eq!((expires.as_str(), require, agreed.we_refresh), ("600;refresher=uac", true, false));
        let (expires, require, agreed) =
            granted(as_uas(&headers(&[("Supported", "timer"), ("Session-Expires", "600;refresher=uas")]), &config(90)));
        assert_eq!((expires.as_str(), require, agreed.we_refresh), ("600;refresher=uas", false, true));
        // A UAC without timer support cannot refresh: the UAS does, and requires nothing.
        let (expires, require, agreed) =
            granted(as_uas(&headers(&[("Session-Expires", "600;refresher=uac")]), &config(90)));
        assert_eq!((expires.as_str(), require, agreed.we_refresh), ("600;refresher=uas", false, true));
        // Nothing asked: the UAS inserts its own interval, at least the UAC's Min-SE.
        let (expires, _, _) = granted(as_uas(&headers(&[("Supported", "timer"), ("Min-SE", "3600")]), &config(90)));
        assert_eq!(expires, "3600;refresher=uac");
        let (expires, _, agreed) = granted(as_uas(&headers(&[]), &config(90)));
        assert_eq!((expires.as_str(), agreed.we_refresh), ("1800;refresher=uas", true));
    }

    #[test]
    fn too_small_an_interval_gets_422_and_off_means_none() {
        assert_eq!(as_uas(&headers(&[("Session-Expires", "60")]), &config(90)), UasTimer::TooSmall(90));
        assert!(matches!(as_uas(&headers(&[("Session-Expires", "60")]), &config(4)), UasTimer::Agreed { .. }));
        let off = SessionTimerConfig { support: Support::Off, ..config(90) };
        assert_eq!(as_uas(&headers(&[("Session-Expires", "60")]), &off), UasTimer::None);
        assert_eq!(as_uac(&headers(&[("Session-Expires", "60")]), &off), None);
        assert!(request_headers(&off, Duration::from_secs(60), None).is_empty());
    }

    #[test]
    fn a_uac_reads_the_2xx_and_retries_a_422_with_the_min_se() {
        let agreed = as_uac(&headers(&[("Session-Expires", "120;refresher=uac")]), &config(90)).unwrap();
        assert_eq!((agreed.interval, agreed.we_refresh), (Duration::from_secs(120), true));
        assert_eq!(agreed.next_action(), Duration::from_secs(60));
        let tiny = as_uac(&headers(&[("Session-Expires", "1;refresher=uac")]), &config(90)).unwrap();
        assert_eq!(tiny.interval, Duration::from_secs(90), "raised to our Min-SE");
        let agreed = as_uac(&headers(&[("Session-Expires", "120;refresher=uas")]), &config(90)).unwrap();
        assert!(!agreed.we_refresh);
        // Expiry for the side that watches: the interval less min(32 s, a third).
        assert_eq!(agreed.next_action(), Duration::from_secs(88));
        let short = Agreed { interval: Duration::from_secs(6), we_refresh: false };
        assert_eq!(short.next_action(), Duration::from_secs(4));
        assert_eq!(as_uac(&headers(&[]), &config(90)), None);
        assert_eq!(
            after_too_small(&headers(&[("Min-SE", "1200")]), Duration::from_secs(600)),
            Some(Duration::from_secs(1200))
        );
        assert_eq!(after_too_small(&headers(&[("Min-SE", "300")]), Duration::from_secs(600)), None);
        let asked = request_headers(&config(90), Duration::from_secs(1800), None);
        assert_eq!(
            asked,
            [("Supported", "timer".to_owned()), ("Session-Expires", "1800".into()), ("Min-SE", "90".into())]
        );
    }
}
