//! What the stack counts, through the `metrics` facade (the process decides where it goes; with
//! no recorder installed each count is a no-op): SIP messages received and sent, by method or
//! status class, retransmissions, TLS handshakes and open connections. Labels come from small
//! fixed sets: an extension method counts as `other`.

use metrics::{Key, Label, Metadata};

use crate::transport::Transport;

use crate::message::{Message, Method, StatusCode};

/// `[direction, name = value]` label pairs, made at compile time: a key that borrows them costs
/// no allocation per message, where `counter!` with a label computed at run time builds a
/// vector of labels for each count.
macro_rules! label_table {
    ($name:literal, $direction:literal, [$($value:literal),* $(,)?]) => {
        [$([Label::from_static_parts("direction", $direction), Label::from_static_parts($name, $value)]),*]
    };
}

/// The methods counted by name (others count as `other`, the last).
macro_rules! method_table {
    ($direction:literal) => {
        label_table!(
            "method",
            $direction,
            [
                "INVITE",
                "ACK",
                "BYE",
                "CANCEL",
                "OPTIONS",
                "REGISTER",
                "UPDATE",
                "PRACK",
                "INFO",
                "MESSAGE",
                "REFER",
                "NOTIFY",
                "SUBSCRIBE",
                "PUBLISH",
                "other",
            ]
        )
    };
}

/// The status classes.
macro_rules! class_table {
    ($direction:literal) => {
        label_table!("class", $direction, ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"])
    };
}

const REQUESTS: &str = "ringer_sip_requests_total";
const RESPONSES: &str = "ringer_sip_responses_total";

static REQUESTS_IN: [[Label; 2]; 15] = method_table!("in");
static REQUESTS_OUT: [[Label; 2]; 15] = method_table!("out");
static RESPONSES_IN: [[Label; 2]; 6] = class_table!("in");
static RESPONSES_OUT: [[Label; 2]; 6] = class_table!("out");

static METADATA: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The method's row in the method tables (`other` for an extension).
fn method_index(method: &Method) -> usize {
    let token = method.standard_token().unwrap_or("other");
    let last = REQUESTS_IN.len() - 1;
    REQUESTS_IN.iter().position(|labels| labels[1].value() == token).unwrap_or(last)
}

/// The status class's row in the class tables.
fn class_index(status: StatusCode) -> usize {
    usize::from(status.as_u16() / 100).clamp(1, RESPONSES_IN.len()) - 1
}

/// Adds one to `name` with `labels`.
fn count(name: &'static str, labels: &'static [Label]) {
    let key = Key::from_static_parts(name, labels);
    metrics::with_recorder(|recorder| recorder.register_counter(&key, &METADATA)).increment(1);
}

/// A message parsed off the wire.
pub(crate) fn received(message: &Message) {
    match message {
        Message::Request(request) => count(REQUESTS, &REQUESTS_IN[method_index(&request.method)]),
        Message::Response(response) => count(RESPONSES, &RESPONSES_IN[class_index(response.status)]),
    }
}

/// A request sent the first time.
pub(crate) fn sent_request(method: &Method) {
    count(REQUESTS, &REQUESTS_OUT[method_index(method)]);
}

/// A response sent the first time.
pub(crate) fn sent_response(status: StatusCode) {
    count(RESPONSES, &RESPONSES_OUT[class_index(status)]);
}

/// A message that could not be parsed (or framed), refused or dropped.
pub(crate) fn malformed() {
    metrics::counter!("ringer_sip_malformed_total").increment(1);
}

/// A request or response sent again (timers A, E, G, the 2xx until ACK, a re-ACK).
pub(crate) fn retransmitted(kind: &'static str) {
    metrics::counter!("ringer_sip_retransmissions_total", "kind" => kind).increment(1);
}

/// A TLS handshake done or failed: `ok`, or why (see [`tls::verify::failure_reason`]), for
/// connections accepted (`in`) or opened (`out`).
pub(crate) fn tls_handshake(direction: &'static str, result: &'static str) {
    metrics::counter!("ringer_tls_handshakes_total", "direction" => direction, "result" => result).increment(1);
}

/// `ringer_sip_connections{transport}`: a stream connection, counted while it is open.
pub(crate) struct OpenConnection(&'static str);

impl OpenConnection {
    pub(crate) fn new(transport: Transport) -> Self {
        let label = match transport {
            Transport::Tls => "tls",
            Transport::Tcp => "tcp",
            _ => "other",
        };
        metrics::gauge!("ringer_sip_connections", "transport" => label).increment(1);
        Self(label)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("ringer_sip_connections", "transport" => self.0).decrement(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_and_status_finds_its_labels() {
        let invite = &REQUESTS_IN[method_index(&Method::Invite)];
        assert_eq!((invite[0].value(), invite[1].key(), invite[1].value()), ("in", "method", "INVITE"));
        assert_eq!(REQUESTS_OUT[method_index(&Method::Publish)][1].value(), "PUBLISH");
        assert_eq!(REQUESTS_OUT[method_index(&Method::Extension("FOO".into()))][1].value(), "other");
        let class = |code: u16| StatusCode::try_from(code).map(|status| RESPONSES_OUT[class_index(status)][1].value());
        assert_eq!(class(100), Ok("1xx"));
        assert_eq!(class(486), Ok("4xx"));
        assert_eq!(class(699), Ok("6xx"));
        assert_eq!(RESPONSES_IN[class_index(StatusCode::OK)][0].value(), "in");
    }
}
