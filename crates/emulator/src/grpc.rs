//! The emulated core's `wgtwo.sipbreakout.v1.SipBreakoutService`, behaving as the operator documents.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::auth::{Authenticator, Principal};
use super::registry::{DeleteOutcome, Registry};
use domain::config::defaults::SCOPE;
use domain::proto::sipbreakout::v1::{
    sip_breakout_service_server::SipBreakoutService, DeleteRegistrationRequest, DeleteRegistrationResponse,
    Registration as WireRegistration, StatusCode, UpsertRegistrationRequest, UpsertRegistrationResponse,
};
use domain::proto::{duration_to_wire, WireRegistrationError};
use domain::types::{Msisdn, Registration};

/// The operator's wording for a `sip_uri` that is not `sips:`.
pub const SECURE_SIP_REQUIRED: &str = "Secure SIP domain name required";

/// How many calls each method has received (refused ones included).
#[derive(Debug, Default)]
pub struct CallCounts {
    /// UpsertRegistration calls.
    pub upserts: AtomicU64,
    /// DeleteRegistration calls.
    pub deletes: AtomicU64,
}

/// Serves SipBreakoutService over the registry.
#[derive(Debug, Clone)]
pub struct SipBreakoutCore {
    registry: Arc<Registry>,
    auth: Arc<Authenticator>,
    /// Empty: every number is a subscriber.
    subscribers: Arc<HashSet<Msisdn>>,
    counts: Arc<CallCounts>,
    /// How long an upsert takes before it is applied and answered.
    upsert_delay: Duration,
}

/// A request the core answers with `STATUS_CODE_NOT_ACCEPTABLE` and this message.
struct NotAcceptable(String);

impl SipBreakoutCore {
    /// A service over `registry`, checking callers with `auth`, accepting only `subscribers`
    /// (any number when empty), counting calls in `counts` and taking `upsert_delay` over
    /// each upsert.
    pub fn new(
        registry: Arc<Registry>,
        auth: Arc<Authenticator>,
        subscribers: HashSet<Msisdn>,
        counts: Arc<CallCounts>,
        upsert_delay: Duration,
    ) -> Self {
        Self { registry, auth, subscribers: Arc::new(subscribers), counts, upsert_delay }
    }

    /// Validates a wire registration for `principal`; `Err(Status)` for authorization failures.
    fn admit(
        &self,
        principal: &Principal,
        wire: Option<WireRegistration>,
    ) -> Result<Result<(Msisdn, Registration), NotAcceptable>, Status> {
        let Some(wire) = wire else {
            return Ok(Err(NotAcceptable("registration is required".into())));
        };
        if !wire.sip_uri.get(..5).is_some_and(|scheme| scheme.eq_ignore_ascii_case("sips:")) {
            return Ok(Err(NotAcceptable(SECURE_SIP_REQUIRED.into())));
        }
        let registration = match Registration::try_from(&wire) {
            Ok(registration) => registration,
            Err(WireRegistrationError::Invalid(domain::types::InvalidValue::SipsUri(_))) => {
                return Ok(Err(NotAcceptable(SECURE_SIP_REQUIRED.into())))
            }
            Err(error) => return Ok(Err(NotAcceptable(error.to_string()))),
        };
        let msisdn = match (principal, &registration.phone_number) {
            (Principal::User(own), None) => own.clone(),
            (Principal::User(own), Some(asked)) if asked != own => {
                return Err(Status::permission_denied("a user token may only act on its own phone number"))
            }
            (_, Some(number)) => number.clone(),
            (Principal::Client, None) => {
                return Ok(Err(NotAcceptable(
                    "phone_number is required when authenticating with client credentials".into(),
                )))
            }
            (Principal::Anonymous, None) => return Ok(Err(NotAcceptable("phone_number is required".into()))),
        };
        if !self.subscribers.is_empty() && !self.subscribers.contains(&msisdn) {
            return Ok(Err(NotAcceptable(format!("{msisdn} is not a subscriber of this operator"))));
        }
        Ok(Ok((msisdn, registration)))
    }
}

/// `ringer_emulated_core_requests_total{method,code}`: each call to the emulated API, by the
/// status code it answered (`STATUS_CODE_OK`, `STATUS_CODE_NOT_ACCEPTABLE`) or the gRPC code
/// it failed with (`PermissionDenied`, `Unauthenticated`...).
fn count_request(method: &'static str, answered: Result<i32, &Status>) {
    let code = match answered {
        Ok(status) => {
            StatusCode::try_from(status).map_or("STATUS_CODE_UNKNOWN", |status| status.as_str_name()).to_owned()
        }
        Err(status) => format!("{:?}", status.code()),
    };
    metrics::counter!("ringer_emulated_core_requests_total", "method" => method, "code" => code).increment(1);
}

#[tonic::async_trait]
impl SipBreakoutService for SipBreakoutCore {
    async fn upsert_registration(
        &self,
        request: Request<UpsertRegistrationRequest>,
    ) -> Result<Response<UpsertRegistrationResponse>, Status> {
        let result = self.upsert(request).await;
        count_request("UpsertRegistration", result.as_ref().map(|response| response.get_ref().status_code));
        result
    }

    async fn delete_registration(
        &self,
        request: Request<DeleteRegistrationRequest>,
    ) -> Result<Response<DeleteRegistrationResponse>, Status> {
        let result = self.delete(request).await;
        count_request("DeleteRegistration", result.as_ref().map(|response| response.get_ref().status_code));
        result
    }
}

impl SipBreakoutCore {
    async fn upsert(
        &self,
        request: Request<UpsertRegistrationRequest>,
    ) -> Result<Response<UpsertRegistrationResponse>, Status> {
        self.counts.upserts.fetch_add(1, Ordering::Relaxed);
        let principal = self.auth.authorize(request.metadata(), SCOPE)?;
        let by_user_token = matches!(principal, Principal::User(_));
        let response = match self.admit(&principal, request.into_inner().registration)? {
            Err(NotAcceptable(message)) => {
                warn!(%message, "upsert refused");
                UpsertRegistrationResponse {
                    status_code: StatusCode::NotAcceptable as i32,
                    error_message: message,
                    time_to_live: None,
                }
            }
            Ok((msisdn, registration)) => {
                if !self.upsert_delay.is_zero() {
                    tokio::time::sleep(self.upsert_delay).await;
                }
                info!(
                    %msisdn,
                    route_type = %registration.route_type,
                    sip_uri = %registration.sip_uri,
                    mo_prefix = ?registration.mo_prefix.as_ref().map(|p| p.as_str()),
                    mt_prefix = ?registration.mt_prefix.as_ref().map(|p| p.as_str()),
                    by_user_token,
                    "registration upserted"
                );
                let ttl = self.registry.upsert_by(msisdn, registration, by_user_token);
                UpsertRegistrationResponse {
                    status_code: StatusCode::Ok as i32,
                    error_message: String::new(),
                    time_to_live: Some(duration_to_wire(ttl)),
                }
            }
        };
        Ok(Response::new(response))
    }

    async fn delete(
        &self,
        request: Request<DeleteRegistrationRequest>,
    ) -> Result<Response<DeleteRegistrationResponse>, Status> {
        self.counts.deletes.fetch_add(1, Ordering::Relaxed);
        let principal = self.auth.authorize(request.metadata(), SCOPE)?;
        let (status_code, error_message) = match self.admit(&principal, request.into_inner().registration)? {
            Err(NotAcceptable(message)) => (StatusCode::NotAcceptable, message),
            Ok((msisdn, registration)) => match self.registry.delete(&msisdn, &registration.sip_uri) {
                DeleteOutcome::Removed => {
                    info!(%msisdn, sip_uri = %registration.sip_uri, "registration deleted");
                    (StatusCode::Ok, String::new())
                }
                // Deleting what is already gone succeeds: the caller's intent holds.
                DeleteOutcome::NotFound => (StatusCode::Ok, String::new()),
                DeleteOutcome::SipUriMismatch => {
                    (StatusCode::NotAcceptable, "sip_uri does not match the registration of this phone number".into())
                }
            },
        };
        if status_code != StatusCode::Ok {
            warn!(message = %error_message, "delete refused");
        }
        Ok(Response::new(DeleteRegistrationResponse { status_code: status_code as i32, error_message }))
    }
}
