//! The state both sides of the SBC share: its configuration, the registrations, the
//! handsets, the two user agents legs are placed on, and the calls under way and seen.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::handsets::Handsets;
use super::records::{SbcCall, SharedCall};
use crate::config::SbcConfig;
use crate::registry::{RegistrationRecord, Registry};
use domain::types::{Msisdn, RouteType};
use sip::core::UserAgent;

/// How many calls [`Sbc::calls`] keeps.
pub(super) const CALLS_KEPT: usize = 1000;

pub(super) struct Shared {
    pub(super) config: SbcConfig,
    pub(super) registry: Arc<Registry>,
    pub(super) handsets: Arc<Handsets>,
    /// Where calls to handsets go: the handset endpoint's UDP address.
    pub(super) handset_target: Option<String>,
    pub(super) access: UserAgent,
    pub(super) interconnect: UserAgent,
    /// Calls with a leg 2 under way, by Session-ID.
    pub(super) sessions: Mutex<HashMap<String, SharedCall>>,
    pub(super) calls: Mutex<VecDeque<SharedCall>>,
    pub(super) refused_leg3: AtomicU64,
    /// Leg 2's Request-URI as `tel:+<prefix><number>` instead of `sip:...;user=phone`.
    pub(super) leg2_tel: AtomicBool,
    /// A Fork subscriber's own calls are forked to the TAS too.
    pub(super) fork_mo: AtomicBool,
    /// Cancelled legs whose real final status is not recorded yet.
    pub(super) settling: Arc<AtomicUsize>,
}

impl Shared {
    pub(super) fn record(&self, call: SbcCall) -> SharedCall {
        let call = Arc::new(Mutex::new(call));
        let mut calls = self.calls.lock();
        if calls.len() == CALLS_KEPT {
            calls.pop_front();
        }
        calls.push_back(call.clone());
        call
    }

    pub(super) fn sessions(&self) -> MutexGuard<'_, HashMap<String, SharedCall>> {
        self.sessions.lock()
    }

    /// Where calls to `number` are delivered: a handset, else the longest matching route.
    pub(super) fn callee_target(&self, number: &Msisdn) -> Option<String> {
        if self.handsets.has(number) {
            return self.handset_target.clone();
        }
        self.config
            .routes
            .iter()
            .filter(|route| number.as_str().starts_with(&route.prefix))
            .max_by_key(|route| route.prefix.len())
            .map(|route| route.target.clone())
    }

    /// A registration of `number` whose route type is one of `kinds`.
    pub(super) fn registration(&self, number: &Msisdn, kinds: &[RouteType]) -> Option<RegistrationRecord> {
        self.registry.lookup(number).filter(|record| kinds.contains(&record.registration.route_type))
    }
}
