//! A message's header fields: names in their canonical spelling (compact forms expanded) and
//! values in order, as read from the wire.

use std::fmt;

use bytestring::ByteString;

use super::grammar::split_list;

/// Compact forms (RFC 3261 §7.3.3 and later RFCs) and the full names they stand for.
const COMPACT_FORMS: &[(u8, &str)] = &[
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'd', "Request-Disposition"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'j', "Reject-Contact"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

/// Canonical spellings of the headers this stack reads or writes.
const KNOWN_NAMES: &[&str] = &[
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
    "Content-Encoding",
    "Content-Disposition",
    "Route",
    "Record-Route",
    "Require",
    "Proxy-Require",
    "Supported",
    "Unsupported",
    "Allow",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Expires",
    "Server",
    "User-Agent",
    "Warning",
    "Reason",
    "Retry-After",
    "Session-Expires",
    "Min-SE",
    "RSeq",
    "RAck",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "History-Info",
    "Diversion",
    "Session-ID",
    "Date",
    "Subject",
    "Event",
    "Refer-To",
    "Referred-By",
    "Identity",
    "Allow-Events",
    "Accept-Contact",
    "Reject-Contact",
    "Request-Disposition",
    "Authorization",
    "WWW-Authenticate",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Timestamp",
    "Organization",
    "Priority",
    "Privacy",
];

/// The longest of [`KNOWN_NAMES`].
const LONGEST_KNOWN: usize = 20;
/// Known names of one length at most.
const SAME_LENGTH: usize = 8;

/// [`KNOWN_NAMES`] by length (their indexes, and how many there are of each length): every
/// header line read looks its name up, and compares it with the few names as long as it
/// rather than with all of them.
const KNOWN_BY_LENGTH: ([[u8; SAME_LENGTH]; LONGEST_KNOWN + 1], [u8; LONGEST_KNOWN + 1]) = {
    let mut indexes = [[0u8; SAME_LENGTH]; LONGEST_KNOWN + 1];
    let mut counts = [0u8; LONGEST_KNOWN + 1];
    assert!(KNOWN_NAMES.len() <= 256, "indexes are bytes");
    let mut index = 0;
    while index < KNOWN_NAMES.len() {
        let length = KNOWN_NAMES[index].len();
        assert!(
            length <= LONGEST_KNOWN && (counts[length] as usize) < SAME_LENGTH,
            "raise LONGEST_KNOWN or SAME_LENGTH"
        );
        indexes[length][counts[length] as usize] = index as u8;
        counts[length] += 1;
        index += 1;
    }
    (indexes, counts)
};

/// The canonical spelling of `name` if it is one of [`KNOWN_NAMES`].
fn known_name(name: &str) -> Option<&'static str> {
    let (indexes, counts) = &KNOWN_BY_LENGTH;
    let length = name.len();
    let candidates = indexes.get(length)?.get(..usize::from(counts[length]))?;
    // The first letters (case folded) rule out nearly every candidate before a whole comparison.
    let first = name.as_bytes().first()?.to_ascii_lowercase();
    candidates.iter().map(|&index| KNOWN_NAMES[usize::from(index)]).find(|known| {
        known.as_bytes().first().map(u8::to_ascii_lowercase) == Some(first) && known.eq_ignore_ascii_case(name)
    })
}

/// A header field name: compact forms expanded, known names in their canonical spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderName(std::borrow::Cow<'static, str>);

impl HeaderName {
    /// Normalises a name as read from the wire.
    pub fn new(name: &str) -> Self {
        if let [single] = name.as_bytes() {
            let lower = single.to_ascii_lowercase();
            if let Some((_, full)) = COMPACT_FORMS.iter().find(|(compact, _)| *compact == lower) {
                return Self(std::borrow::Cow::Borrowed(full));
            }
        }
        match known_name(name) {
            Some(known) => Self(std::borrow::Cow::Borrowed(known)),
            None => Self(std::borrow::Cow::Owned(name.to_owned())),
        }
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Case-insensitive comparison, as header names compare.
    pub fn is(&self, name: &str) -> bool {
        self.0.eq_ignore_ascii_case(name)
    }
}

/// A header field's value: a slice of the message it was read from, sharing that message's
/// one buffer, or text of its own in a message being built. A parsed request's values cost no
/// allocation each, and copying them into a response (Via, From, To…) costs none either.
#[derive(Clone)]
pub struct HeaderValue(Text);

#[derive(Clone)]
enum Text {
    Shared(ByteString),
    Owned(String),
}

impl HeaderValue {
    /// A value that shares `text`'s buffer (a slice of a message read off the wire).
    pub(crate) fn shared(text: ByteString) -> Self {
        Self(Text::Shared(text))
    }

    /// Whether the value is a slice of a received message rather than a copy.
    #[cfg(test)]
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self.0, Text::Shared(_))
    }

    /// The value.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Text::Shared(text) => text,
            Text::Owned(text) => text,
        }
    }
}

/// Values compare as text, wherever they are kept.
impl PartialEq for HeaderValue {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for HeaderValue {}

impl From<String> for HeaderValue {
    fn from(text: String) -> Self {
        Self(Text::Owned(text))
    }
}

impl std::ops::Deref for HeaderValue {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// One header field line (after unfolding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name.
    pub name: HeaderName,
    /// The value, without leading and trailing whitespace.
    pub value: HeaderValue,
}

/// The header fields of a message, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    /// No headers (room for a typical request's without growing).
    pub fn new() -> Self {
        Self(Vec::with_capacity(16))
    }

    /// Appends a header.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push(Header { name: HeaderName::new(name), value: HeaderValue::from(value.into()) });
    }

    /// Appends a header read off the wire, its value a slice of the message.
    pub(crate) fn push_shared(&mut self, name: &str, value: ByteString) {
        self.0.push(Header { name: HeaderName::new(name), value: HeaderValue::shared(value) });
    }

    /// Appends a line as it is (a value read off the wire stays shared).
    pub fn push_line(&mut self, line: Header) {
        self.0.push(line);
    }

    /// Appends every line of `name` in `from`, in order, sharing their values (no copy of a
    /// value read off the wire). Returns how many there were.
    pub fn copy_from(&mut self, from: &Headers, name: &str) -> usize {
        let before = self.0.len();
        self.0.extend(from.0.iter().filter(|h| h.name.is(name)).cloned());
        self.0.len() - before
    }

    /// The first line of `name`.
    pub fn first_line(&self, name: &str) -> Option<&Header> {
        self.0.iter().find(|h| h.name.is(name))
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.first_line(name).map(|h| h.value.as_str())
    }

    /// Every line of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |h| h.name.is(name)).map(|h| h.value.as_str())
    }

    /// Every comma-separated value of `name` across its lines (for list headers like Via, Require).
    pub fn values<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        self.get_all(name).flat_map(split_list).collect()
    }

    /// Removes every line of `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|h| !h.name.is(name));
    }

    /// Replaces every line of `name` with one.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter().position(|h| h.name.is(name)) {
            Some(first) => {
                self.0[first].value = HeaderValue::from(value);
                let mut index = 0;
                self.0.retain(|h| {
                    index += 1;
                    index - 1 == first || !h.name.is(name)
                });
            }
            None => self.push(name, value),
        }
    }

    /// All headers in order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_name_is_found_in_any_case_and_no_other() {
        for known in KNOWN_NAMES {
            for spelling in [known.to_string(), known.to_ascii_lowercase(), known.to_ascii_uppercase()] {
                assert_eq!(known_name(&spelling), Some(*known), "{spelling}");
            }
        }
        for unknown in ["", "X", "Vía", "Fromm", "X-Custom-Header", "P-Preferred-Identity-Too", &"x".repeat(300)] {
            assert_eq!(known_name(unknown), None, "{unknown}");
        }
        assert_eq!(HeaderName::new("cseq").as_str(), "CSeq");
        assert_eq!(HeaderName::new("X-Custom").as_str(), "X-Custom");
    }
}
