//! Media: SDP handling now; WebRTC-style sessions and the apps come with their issue.

pub mod sdp;
