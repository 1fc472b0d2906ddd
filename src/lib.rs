//! `ringer`: a SIP-side TAS/PBX endpoint for an operator core's SIP Breakout API, and an emulator
//! of that core, so that everything runs and is tested on one machine.
//!
//! Data flows one way: [`registrar`] keeps the subscribers registered with the core over gRPC;
//! [`core`] emulates the operator's side of that API.

#![warn(missing_docs)]

pub mod call;
pub mod config;
pub mod conformance;
pub mod core;
pub mod lab;
pub mod media;
pub mod proto;
pub mod registrar;
pub mod sip;
pub mod tas;
pub mod tls;
pub mod types;
