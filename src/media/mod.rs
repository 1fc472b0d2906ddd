//! Media: SDP, and plain RTP sessions with the echo app; WebRTC-style sessions and the
//! voicemail and announcement apps come with their issue.

pub mod apps;
pub mod channel;
pub mod codec;
pub mod g711;
pub mod mailbox;
pub mod peer;
pub mod plain;
pub mod rtp;
pub mod sdp;
pub mod webrtc;
