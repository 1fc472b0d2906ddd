//! The domain both sides of the SIP Breakout API share, and nothing else of ringer: E.164
//! numbers, prefixes, route types and call directions, the operator's gRPC contract (generated
//! from `proto/`), and reading configuration files.

// Outside tests nothing is unwrapped: errors are handled or explained (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod proto;
pub mod types;
