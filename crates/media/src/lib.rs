//! Media: RTP and its codecs, plain-RTP and WebRTC-style sessions (ICE, DTLS-SRTP), the apps
//! that play and listen (echo, announcement, voicemail) and the mailbox they record into. It
//! knows SDP (the `sdp` crate) but nothing of SIP.

// Outside tests nothing is unwrapped: errors are handled or explained (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod apps;
pub mod channel;
pub mod codec;
pub mod g711;
pub mod mailbox;
pub mod peer;
pub mod plain;
pub mod rtp;
mod runtime;
pub mod webrtc;
