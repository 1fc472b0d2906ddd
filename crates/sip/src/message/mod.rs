//! The project's own SIP message types. The parser behind them is ours too (see [`parse`]): this
//! is the one place that knows SIP's text form, so it can be fixed or swapped here alone.
//!
//! Data flows one way inside it too: [`grammar`] under [`uri`], [`method`], [`headers`] and
//! [`status`]; typed header values ([`header`]) over those; the messages ([`types`]); then the
//! parser and the validation of what a request must carry.

pub mod grammar;
pub mod header;
pub mod headers;
pub mod method;
pub mod parse;
pub mod status;
pub mod types;
pub mod uri;
pub mod validate;

pub use headers::{Header, HeaderName, HeaderValue, Headers};
pub use method::Method;
pub use parse::{frame_stream, parse_datagram, parse_message, Framing, ParseError};
pub use status::{reason_phrase, BadStatusCode, StatusCode};
pub use types::{new_tag, Message, Request, Response};
pub use uri::Uri;
