//! The pieces of the messages a user agent sends: responses as RFC 3261 §8.2.6 builds them,
//! its Via, Contact and host, and what it reads of a peer's request (remote target, Allow,
//! SIPS, SDP types, the session description's o= line).

use bytes::Bytes;

use crate::config::{UaConfig, ACCEPT, ALLOW};
use crate::message::header::{NameAddr, RecordRoute, MAGIC_COOKIE};
use crate::message::{new_tag, Method, Request, Response, StatusCode, Uri};
use crate::outbound::ListeningPorts;
use crate::session_timer::{self, Agreed, UasTimer};
use crate::transport::{response_to, Link, Transport};

/// The session timer of a 2xx to `request` (RFC 4028 §9): Session-Expires, and `Require: timer`
/// when the UAC refreshes, added to `response`; what this side does, when a timer applies.
pub(crate) fn grant_session_timer(config: &UaConfig, request: &Request, response: &mut Response) -> Option<Agreed> {
    match session_timer::as_uas(&request.headers, &config.session_timer) {
        UasTimer::Agreed { session_expires, require, agreed } => {
            response.headers.push_typed(&session_expires);
            if require {
                response.headers.push("Require", "timer");
            }
            Some(agreed)
        }
        // Refused with 422 before the request got this far.
        UasTimer::None | UasTimer::TooSmall(_) => None,
    }
}

pub(crate) fn with_allow(mut response: Response) -> Response {
    response.headers.push("Allow", ALLOW);
    response
}

pub(crate) fn is_sdp(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/sdp"))
}

pub(crate) fn accepts_sdp(media: &str) -> bool {
    let media = media.split(';').next().unwrap_or_default().trim();
    ["application/sdp", "application/*", "*/*"].iter().any(|ok| media.eq_ignore_ascii_case(ok))
}

/// A response to `request` as this UA sends it: copied headers, To tag, Server, and for
/// successful INVITE/UPDATE/OPTIONS a Contact, Allow, Accept and Supported.
pub(crate) fn build_response(
    config: &UaConfig,
    request: &Request,
    status: StatusCode,
    tag: Option<&str>,
    body: Option<Bytes>,
) -> Option<Response> {
    let mut response = response_to(&request.headers, status, status.reason_phrase())?;
    match tag {
        Some(tag) => response.add_to_tag(tag),
        None => response.add_to_tag(&new_tag()),
    }
    response.headers.push("Server", config.server.clone());
    if status.is_success() && request.method == Method::Options {
        response.headers.push("Allow", ALLOW);
        response.headers.push("Accept", ACCEPT);
        response.headers.push("Supported", config.supported());
    }
    if let Some(body) = body {
        response.headers.push("Content-Type", "application/sdp");
        response.body = body;
    }
    Some(response)
}

/// The host peers reach us at on `link`: the certificate's name on TLS, else the local address
/// (the configured host when bound to an unspecified address).
pub(crate) fn local_host(config: &UaConfig, link: &Link) -> String {
    let local = link.local();
    match link.transport() {
        Transport::Tls => config.contact_host.clone(),
        _ if local.ip().is_unspecified() => config.contact_host.clone(),
        _ if local.is_ipv6() => format!("[{}]", local.ip()),
        _ => local.ip().to_string(),
    }
}

/// Our Contact on `link`: the listening port of its transport (a connection ringer opened has
/// an ephemeral local port that accepts nothing). Over TLS it is a SIPS URI when the request
/// that makes the dialog was addressed to one (RFC 3261 §12.1.1), else `sip:` with
/// `transport=tls`, which clients without SIPS support (baresip) can reach.
pub(crate) fn contact(config: &UaConfig, ports: ListeningPorts, link: &Link, secure: bool) -> String {
    let port = ports.of(link.transport()).unwrap_or(link.local().port());
    let host = local_host(config, link);
    match link.transport() {
        Transport::Tls if secure => format!("<sips:{host}:{port};transport=tls>"),
        transport => format!("<sip:{host}:{port};transport={}>", transport.via_name().to_ascii_lowercase()),
    }
}

/// The URI of the first Contact in `headers`: the peer's remote target (RFC 3261 §12.1).
pub(crate) fn remote_target(headers: &super::message::Headers) -> Option<Uri> {
    headers.values("Contact").first().and_then(|contact| NameAddr::parse(contact).ok()).map(|contact| contact.uri)
}

/// Whether the Allow header of `headers` lists UPDATE.
pub(crate) fn allows_update(headers: &super::message::Headers) -> bool {
    headers.values("Allow").iter().any(|method| method.eq_ignore_ascii_case("UPDATE"))
}

/// Whether `request` was addressed to a SIPS URI: its Request-URI, or the top Record-Route.
pub(crate) fn addressed_securely(request: &Request) -> bool {
    let secure = |uri: &Uri| matches!(uri, Uri::Sip(uri) if uri.secure);
    secure(&request.uri) || request.headers.parsed::<RecordRoute>().is_some_and(|RecordRoute(top)| secure(&top.uri))
}

/// A top Via for a request sent on `link`, with a new branch.
pub(crate) fn via(config: &UaConfig, ports: ListeningPorts, link: &Link) -> String {
    let port = ports.of(link.transport()).unwrap_or(link.local().port());
    format!(
        "SIP/2.0/{} {}:{};branch={}{};rport",
        link.transport(),
        local_host(config, link),
        port,
        MAGIC_COOKIE,
        new_tag()
    )
}

/// The o= line of a session description: its originator, session id and version, which stay
/// the same while the description does not change (RFC 3264 §8).
pub(crate) fn origin_line(sdp: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(sdp).ok()?;
    text.lines().map(str::trim_end).find(|line| line.starts_with("o=")).map(str::to_owned)
}
