//! Any description the model can hold is written in a form that reads back as the same
//! description (write → parse), for descriptions generated at random.

use proptest::prelude::*;
use sdp::{Attribute, Connection, Line, MediaDescription, Origin, SessionDescription};

/// A token: what SDP names and fields are made of.
fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9_.+-]{0,11}"
}

/// Text that may appear after `=` or `:`: no line break, nothing trailing a line.
fn text() -> impl Strategy<Value = String> {
    "[ -~]{0,30}[!-~]|"
}

fn address() -> impl Strategy<Value = std::net::IpAddr> {
    prop_oneof![any::<[u8; 4]>().prop_map(std::net::IpAddr::from), any::<[u16; 8]>().prop_map(std::net::IpAddr::from)]
}

fn connection() -> impl Strategy<Value = Connection> {
    address().prop_map(Connection::to_ip)
}

fn attribute() -> impl Strategy<Value = Attribute> {
    (token(), proptest::option::of(text())).prop_map(|(name, value)| Attribute { name, value })
}

/// Lines of any kind but `m=`, `o=` (only at session level) and `v=` (first).
fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        connection().prop_map(Line::Connection),
        attribute().prop_map(Line::Attribute),
        (prop::sample::select(vec!['s', 'i', 'u', 'e', 'p', 'b', 't', 'r', 'z', 'k']), text())
            .prop_map(|(kind, value)| Line::Other { kind, value }),
    ]
}

fn origin() -> impl Strategy<Value = Origin> {
    (token(), "[0-9]{1,20}", "[0-9]{1,20}", connection()).prop_map(|(username, session_id, session_version, c)| {
        Origin {
            username,
            session_id,
            session_version,
            net_type: c.net_type,
            addr_type: c.addr_type,
            address: c.address,
        }
    })
}

fn media() -> impl Strategy<Value = MediaDescription> {
    (
        token(),
        any::<u16>(),
        proptest::option::of(any::<u16>()),
        "[A-Z]{3}(/[A-Z]{3,5}){0,3}",
        prop::collection::vec("[0-9]{1,3}|[a-z]{1,5}", 0..5),
        prop::collection::vec(line(), 0..6),
    )
        .prop_map(|(kind, port, port_count, proto, formats, lines)| MediaDescription {
            kind,
            port,
            port_count,
            proto,
            formats,
            lines,
        })
}

fn description() -> impl Strategy<Value = SessionDescription> {
    (origin(), prop::collection::vec(line(), 0..6), prop::collection::vec(media(), 0..4)).prop_map(
        |(origin, rest, media)| {
            let mut lines = vec![Line::Other { kind: 'v', value: "0".into() }, Line::Origin(origin)];
            lines.extend(rest);
            SessionDescription { lines, media }
        },
    )
}

proptest! {
    #[test]
    fn what_is_written_reads_back_the_same(description in description()) {
        let written = description.to_string();
        let read = SessionDescription::parse(&written);
        prop_assert_eq!(read, Ok(description), "{}", written);
    }

    #[test]
    fn any_text_is_read_or_refused_without_a_panic(text in "(([a-z]=[ -~]{0,20})?\r?\n){0,12}") {
        if let Ok(description) = SessionDescription::parse(&text) {
            // What was read is written back as something that reads the same.
            prop_assert_eq!(SessionDescription::parse(&description.to_string()), Ok(description));
        }
    }
}
