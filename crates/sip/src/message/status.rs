//! Status codes (RFC 3261 §21 and the extensions ringer meets) and their reason phrases.

use std::fmt;

/// A SIP response status code: three digits, 100 to 699 (RFC 3261 §7.2, §21).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatusCode(u16);

/// Shown as the bare number, as in logs and reports.
impl fmt::Debug for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A number that is not a SIP status code (outside 100-699).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a SIP status code (100-699)")]
pub struct BadStatusCode(pub u16);

macro_rules! status_codes {
    ($($name:ident = $code:literal;)*) => {
        impl StatusCode {
            $(
                #[doc = concat!("`", stringify!($code), "`.")]
                pub const $name: StatusCode = StatusCode($code);
            )*
        }
    };
}

status_codes! {
    TRYING = 100;
    RINGING = 180;
    CALL_IS_BEING_FORWARDED = 181;
    QUEUED = 182;
    SESSION_PROGRESS = 183;
    OK = 200;
    ACCEPTED = 202;
    MULTIPLE_CHOICES = 300;
    MOVED_PERMANENTLY = 301;
    MOVED_TEMPORARILY = 302;
    BAD_REQUEST = 400;
    UNAUTHORIZED = 401;
    FORBIDDEN = 403;
    NOT_FOUND = 404;
    METHOD_NOT_ALLOWED = 405;
    NOT_ACCEPTABLE = 406;
    REQUEST_TIMEOUT = 408;
    GONE = 410;
    REQUEST_ENTITY_TOO_LARGE = 413;
    REQUEST_URI_TOO_LONG = 414;
    UNSUPPORTED_MEDIA_TYPE = 415;
    UNSUPPORTED_URI_SCHEME = 416;
    BAD_EXTENSION = 420;
    EXTENSION_REQUIRED = 421;
    SESSION_INTERVAL_TOO_SMALL = 422;
    TEMPORARILY_UNAVAILABLE = 480;
    CALL_DOES_NOT_EXIST = 481;
    LOOP_DETECTED = 482;
    TOO_MANY_HOPS = 483;
    ADDRESS_INCOMPLETE = 484;
    BUSY_HERE = 486;
    REQUEST_TERMINATED = 487;
    NOT_ACCEPTABLE_HERE = 488;
    REQUEST_PENDING = 491;
    UNDECIPHERABLE = 493;
    SERVER_INTERNAL_ERROR = 500;
    NOT_IMPLEMENTED = 501;
    BAD_GATEWAY = 502;
    SERVICE_UNAVAILABLE = 503;
    SERVER_TIMEOUT = 504;
    VERSION_NOT_SUPPORTED = 505;
    MESSAGE_TOO_LARGE = 513;
    BUSY_EVERYWHERE = 600;
    DECLINE = 603;
    DOES_NOT_EXIST_ANYWHERE = 604;
    NOT_ACCEPTABLE_ANYWHERE = 606;
}

impl StatusCode {
    /// `code` when it is a status code (100-699).
    pub const fn new(code: u16) -> Result<Self, BadStatusCode> {
        match code {
            100..=699 => Ok(Self(code)),
            _ => Err(BadStatusCode(code)),
        }
    }

    /// The number.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// 1xx: the request goes on.
    pub const fn is_provisional(self) -> bool {
        self.0 < 200
    }

    /// 2xx.
    pub const fn is_success(self) -> bool {
        self.0 >= 200 && self.0 < 300
    }

    /// 2xx to 6xx: the transaction is done.
    pub const fn is_final(self) -> bool {
        self.0 >= 200
    }

    /// The class: 1 to 6. A client treats an unknown code as the x00 of its class (RFC 3261
    /// §8.1.3.2).
    pub const fn class(self) -> u16 {
        self.0 / 100
    }

    /// The standard reason phrase.
    pub fn reason_phrase(self) -> &'static str {
        reason_phrase(self.0)
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl TryFrom<u16> for StatusCode {
    type Error = BadStatusCode;

    fn try_from(code: u16) -> Result<Self, BadStatusCode> {
        Self::new(code)
    }
}

impl From<StatusCode> for u16 {
    fn from(status: StatusCode) -> u16 {
        status.0
    }
}

impl PartialEq<u16> for StatusCode {
    fn eq(&self, other: &u16) -> bool {
        self.0 == *other
    }
}

impl PartialOrd<u16> for StatusCode {
    fn partial_cmp(&self, other: &u16) -> Option<std::cmp::Ordering> {
        self.0.partial_cmp(other)
    }
}

impl<'de> serde::Deserialize<'de> for StatusCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = u16::deserialize(deserializer)?;
        Self::new(code).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for StatusCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.0)
    }
}

/// The standard reason phrase of a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match status / 100 {
            1 => "Session Progress",
            2 => "OK",
            3 => "Redirection",
            4 => "Request Failure",
            5 => "Server Failure",
            _ => "Global Failure",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_three_digit_codes_of_the_six_classes_are_status_codes() {
        assert_eq!(StatusCode::new(486).map(StatusCode::reason_phrase), Ok("Busy Here"));
        assert_eq!(StatusCode::new(99), Err(BadStatusCode(99)));
        assert_eq!(StatusCode::new(700), Err(BadStatusCode(700)));
        let unknown = StatusCode::new(499).unwrap();
        assert_eq!((unknown.class(), unknown.reason_phrase()), (4, "Request Failure"));
        assert!(StatusCode::RINGING.is_provisional() && !StatusCode::RINGING.is_final());
        assert!(StatusCode::OK.is_success() && StatusCode::OK.is_final());
        assert!(StatusCode::BUSY_HERE > 300 && StatusCode::BUSY_HERE == 486);
        assert_eq!(StatusCode::DECLINE.to_string(), "603");
    }
}
