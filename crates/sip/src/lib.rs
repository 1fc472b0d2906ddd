//! The SIP stack: messages, transports, transactions and dialogs (RFC 3261).
//!
//! Data flows one way: [`transport`] turns bytes from sockets into [`message`]s, the
//! transaction layer matches them, and the call layer above decides what to answer.

// Outside tests nothing is unwrapped: errors are handled or explained (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod b2bua;
pub mod call;
pub mod client;
pub mod compose;
pub mod config;
pub mod core;
pub mod dialog;
pub mod endpoint;
pub mod message;
mod metrics;
pub mod outbound;
pub mod route;
pub mod session_timer;
mod timer_queue;
pub mod timers;
pub mod transaction;
pub mod transport;
pub mod ua;
pub mod uac;

#[cfg(test)]
mod test_support;
