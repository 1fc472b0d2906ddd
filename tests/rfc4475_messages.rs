//! Every RFC 4475 torture message through the parser and validator, with the RFC's verdict.
//! The files are read from `tests/fixtures/rfc4475` (or `$RFC4475_DIR`), byte-exact.

mod common;

use ringer::sip::message::validate::{validate_request, validate_response};
use ringer::sip::message::{parse_datagram, Message};

/// What the message layer must make of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A valid request: parsed and validated (what the UAS answers is checked over the wire).
    Request,
    /// A valid response.
    Response,
    /// A request refused with this status; the headers needed to answer it were read.
    Refused(u16),
    /// An invalid response (dropped; responses are never answered).
    BadResponse,
    /// So broken that no answer can be addressed (dropped).
    Unanswerable,
}

use Verdict::*;

/// The RFC 4475 verdicts, by file (see the corpus README for the sections).
const CORPUS: &[(&str, Verdict)] = &[
    // 3.1.1 valid messages
    ("TC_WSINV", Request),
    ("TC_INTMETH", Request),
    ("TC_ESC01_V", Request),
    ("TC_ESCNULL_V", Request),
    ("TC_ESC02_V", Request),
    ("TC_LWSDISP_V", Request),
    ("TC_LONGREQ_V", Request),
    ("TC_DBLREQ", Request),
    ("TC_SEMIURI_V", Request),
    ("TC_TRANSPORTS_V", Request),
    ("TC_MPART01", Request),
    ("TC_UNREASON_V", Response),
    ("TC_NOREASON_V", Response),
    // 3.1.2 invalid messages
    ("TC_BADINV01_I", Refused(400)),
    ("TC_CLERR_I", Refused(400)),
    ("TC_SCALAR02_V", Refused(400)),
    ("TC_SCALARLG_V", BadResponse),
    ("TC_QUOTBAL_I", Refused(400)),
    ("TC_LTGTRURI_I", Refused(400)),
    ("TC_LWSRURI_I", Refused(400)),
    ("TC_LWSSTART_V", Refused(400)),
    ("TC_TRWS_I", Refused(400)),
    ("TC_ESCRURI_V", Refused(400)),
    // The RFC lets an element ignore a Date it cannot read; ringer does not use Date.
    ("TC_BADDATE_V", Request),
    ("TC_REGBADCT_I", Refused(400)),
    ("TC_BADASPEC_I", Refused(400)),
    ("TC_BADDN_I", Refused(400)),
    ("TC_BADVERS_V", Refused(505)),
    ("TC_MISMATCH01_V", Refused(400)),
    ("TC_MISMATCH02_V", Refused(400)),
    ("TC_BIGCODE_V", BadResponse),
    ("TC_NCL_I", Refused(400)),
    // 3.2 transaction layer
    ("TC_BADBRANCH_V", Request),
    // 3.3 application layer: valid messages the UAS answers (416, 420, 415, 406, …)
    ("TC_INSUF_I", Refused(400)),
    ("TC_UNKSCM_V", Request),
    ("TC_NOVELSC_V", Request),
    ("TC_UNKSM2_V", Request),
    ("TC_BEXT01_V", Request),
    ("TC_INVUT_V", Request),
    ("TC_REGAUT01_V", Request),
    ("TC_MULTI01_I", Refused(400)),
    ("TC_MCL01_I", Refused(400)),
    ("TC_BCAST_V", Response),
    ("TC_ZEROMF_V", Request),
    ("TC_CPARAM01_V", Request),
    ("TC_CPARAM02_V", Request),
    ("TC_REGESCRT_V", Request),
    ("TC_SDP01_V", Request),
    // 3.4 backward compatibility
    ("TC_INV2543_I", Request),
    // not in RFC 4475: malformed beyond answering
    ("TC_TEST_I", Unanswerable),
];

fn verdict_of(bytes: &[u8]) -> (Verdict, String) {
    match parse_datagram(bytes) {
        Ok(Message::Request(request)) => match validate_request(&request) {
            Ok(_) => (Request, String::new()),
            Err(rejection) => (Refused(rejection.status.as_u16()), rejection.reason),
        },
        Ok(Message::Response(response)) => match validate_response(&response) {
            Ok(_) => (Response, String::new()),
            Err(rejection) => (BadResponse, rejection.reason),
        },
        Err(error) if !error.is_request => (BadResponse, error.reason),
        // A refusal can only be sent when the headers that address it were read.
        Err(error) if error.headers.as_ref().is_some_and(|h| h.get("Via").is_some()) => {
            (Refused(error.status.as_u16()), error.reason)
        }
        Err(error) => (Unanswerable, error.reason),
    }
}

#[test]
fn every_torture_message_gets_the_rfc_verdict() {
    let dir = common::rfc4475_dir();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("RFC 4475 corpus at {}: {error}", dir.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".dat"))
        .collect();
    files.sort();
    assert_eq!(files.len(), CORPUS.len(), "every file in the corpus has a verdict here");
    let mut failures = Vec::new();
    for (name, expected) in CORPUS {
        let bytes = std::fs::read(dir.join(format!("{name}.dat"))).expect("corpus file");
        let (verdict, reason) = verdict_of(&bytes);
        if verdict != *expected {
            failures.push(format!("{name}: expected {expected:?}, got {verdict:?} ({reason})"));
        } else if matches!(verdict, Refused(_)) {
            assert!(!reason.is_empty(), "{name}: a refusal names its fault");
        }
    }
    assert!(failures.is_empty(), "{} verdicts differ:\n{}", failures.len(), failures.join("\n"));
}
