//! `ringer`: a SIP-side TAS/PBX endpoint for an operator core's SIP Breakout API, an emulator of
//! that core, and a conformance harness, so that everything runs and is tested on one machine.
//!
//! The work is done by the workspace's crates, layered so that none reaches back:
//! `domain` (numbers, route types, the gRPC contract) and `tls` at the bottom; `sip` (messages,
//! transports, transactions, dialogs, the UA and the B2BUA) and `sdp`, then `media` (RTP,
//! codecs, WebRTC, apps); the `registrar`; the `tas` (routing, behaviours); the `emulator` of
//! the operator core; the `conformance` harness. This crate is the `ringer` command and its lab
//! (the whole path in one process); it re-exports the crates under one name for the tests.

// Outside tests nothing is unwrapped: errors are handled or explained (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod lab;

pub use ::conformance;
pub use ::media;
pub use ::registrar;
pub use ::sdp;
pub use ::sip;
pub use ::store;
pub use ::tas;
pub use ::tls;
pub use domain::{proto, types};
/// The emulated operator core.
pub use emulator as core;
/// Call handling of the TAS.
pub use tas::call;

/// The configuration files: the TAS's (`serve`), the emulated core's (`core`), and what both use.
pub mod config {
    pub use domain::config::{defaults, read_toml, ConfigError};
    pub use emulator::config as core;
    pub use sip::config::{ExtensionUse, ExtensionsConfig};
    pub use tas::config as serve;
}
