//! The cases, one file per family, each family behind [`CaseFamily`]: a name prefix its cases
//! share and a `run` that starts, checks and records them through the shared
//! [`Harness`](crate::harness::Harness). The crate root runs the families in their fixed order;
//! call placement and the media checks are shared by the call and race families, so they have
//! files of their own that neither reaches back from.

pub(crate) mod calls;
pub(crate) mod ingress;
pub(crate) mod media;
pub(crate) mod placing;
pub(crate) mod races;
pub(crate) mod registration;
pub(crate) mod robustness;
pub(crate) mod sip;
pub(crate) mod tls;

use crate::harness::Harness;

/// A family of cases run together against the TAS.
pub(crate) trait CaseFamily {
    /// What the name of every case the family records starts with.
    const PREFIX: &'static str;

    /// Runs the family's cases (those `--only` leaves in), recording each in the harness.
    async fn run(&self, harness: &mut Harness);
}

/// Runs `family`, checking (in debug builds) that every case it records bears its prefix.
pub(crate) async fn run_family<F: CaseFamily>(family: &F, harness: &mut Harness) {
    let before = harness.cases().len();
    family.run(harness).await;
    debug_assert!(
        harness.cases()[before..].iter().all(|case| case.name.starts_with(F::PREFIX)),
        "{} recorded a case outside its prefix",
        F::PREFIX,
    );
}
