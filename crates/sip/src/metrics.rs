//! What the stack counts, through the `metrics` facade (the process decides where it goes; with
//! no recorder installed each count is a no-op): SIP messages received and sent, by method or
//! status class, retransmissions, TLS handshakes and open connections. Labels come from small
//! fixed sets: an extension method counts as `other`.

use crate::transport::Transport;

use crate::message::{Message, Method, StatusCode};

/// The method as a label.
fn method_label(method: &Method) -> &'static str {
    method.standard_token().unwrap_or("other")
}

/// The status class as a label.
fn class_label(status: StatusCode) -> &'static str {
    match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "6xx",
    }
}

/// A message parsed off the wire.
pub(crate) fn received(message: &Message) {
    match message {
        Message::Request(request) => {
            metrics::counter!("ringer_sip_requests_total", "direction" => "in", "method" => method_label(&request.method))
                .increment(1)
        }
        Message::Response(response) => {
            metrics::counter!("ringer_sip_responses_total", "direction" => "in", "class" => class_label(response.status))
                .increment(1)
        }
    }
}

/// A request sent the first time.
pub(crate) fn sent_request(method: &Method) {
    metrics::counter!("ringer_sip_requests_total", "direction" => "out", "method" => method_label(method)).increment(1);
}

/// A response sent the first time.
pub(crate) fn sent_response(status: StatusCode) {
    metrics::counter!("ringer_sip_responses_total", "direction" => "out", "class" => class_label(status)).increment(1);
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
