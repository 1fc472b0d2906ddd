//! gRPC clients of the operator's API: one connection (channel and bearer tokens, renewed
//! once after UNAUTHENTICATED) shared by SipBreakoutService's client here and SmsService's
//! ([`crate::sms`]). Subscribers who enabled the product through the operator's consent page
//! are registered with their own token ([`UserTokens`]), the others with the connection's.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use thiserror::Error;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};
use tracing::{debug, warn};

use super::auth::{AuthError, Credentials, Secret, TokenSource};
use crate::config::CoreApiConfig;
use domain::proto::sipbreakout::v1::{
    sip_breakout_service_client::SipBreakoutServiceClient, DeleteRegistrationRequest, DeleteRegistrationResponse,
    UpsertRegistrationRequest, UpsertRegistrationResponse,
};
use domain::types::{Msisdn, Registration};

/// Why a call to the core did not get an answer.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The endpoint URL or CA file is unusable.
    #[error("core endpoint: {0}")]
    Endpoint(String),
    /// The registration breaks a rule the core would enforce; nothing was sent.
    #[error("{0}")]
    Invalid(String),
    /// No token could be had.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The core (or the way to it) answered with a gRPC error.
    #[error("gRPC {code:?}: {message}")]
    Status {
        /// The gRPC status code.
        code: Code,
        /// The status message.
        message: String,
    },
}

impl ClientError {
    /// Whether trying again later may help without a change of configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Auth(error) => error.is_transient(),
            ClientError::Status { code, .. } => matches!(
                code,
                Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::ResourceExhausted
                    | Code::Aborted
                    | Code::Internal
                    | Code::Unknown
                    | Code::Cancelled
            ),
            ClientError::Endpoint(_) | ClientError::Invalid(_) => false,
        }
    }
}

impl From<Status> for ClientError {
    fn from(status: Status) -> Self {
        ClientError::Status { code: status.code(), message: status.message().to_owned() }
    }
}

/// The way to the operator's API: one endpoint, one set of credentials; cheap to clone.
#[derive(Debug, Clone)]
pub struct CoreConnection {
    channel: Channel,
    tokens: std::sync::Arc<TokenSource>,
}

impl CoreConnection {
    /// Prepares a connection; it is made on first use and re-made after failures.
    pub fn new(api: &CoreApiConfig, credentials: Credentials) -> Result<Self, ClientError> {
        tls::install_crypto_provider();
        let endpoint = Endpoint::from_shared(api.endpoint.clone())
            .map_err(|error| ClientError::Endpoint(format!("{:?} is not a valid URL: {error}", api.endpoint)))?
            .connect_timeout(api.connect_timeout)
            .timeout(api.request_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(false);
        let endpoint = if api.endpoint.starts_with("https://") {
            endpoint
                .tls_config(tls_config(api.ca_file.as_deref())?)
                .map_err(|error| ClientError::Endpoint(error.to_string()))?
        } else {
            endpoint
        };
        let tokens = TokenSource::new(credentials, api.request_timeout)?;
        Ok(Self { channel: endpoint.connect_lazy(), tokens: std::sync::Arc::new(tokens) })
    }

    /// The channel, for a service's generated client.
    pub(crate) fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The credentials the tokens come from.
    pub(crate) fn credentials(&self) -> &Credentials {
        self.tokens.credentials()
    }

    /// Sends `message` with the current token; after UNAUTHENTICATED, once more with a new one.
    pub(crate) async fn with_token<M, R, F, Fut>(&self, call: F, message: M) -> Result<R, ClientError>
    where
        M: Clone,
        F: Fn(Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let mut retried = false;
        loop {
            let mut request = Request::new(message.clone());
            if let Some(token) = self.tokens.bearer().await? {
                let mut value = MetadataValue::try_from(format!("Bearer {}", token.expose())).map_err(|_| {
                    ClientError::Invalid("the bearer token holds characters not allowed in a header".into())
                })?;
                value.set_sensitive(true);
                request.metadata_mut().insert("authorization", value);
            }
            match call(request).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if status.code() == Code::Unauthenticated && !retried && self.can_renew() => {
                    warn!(message = status.message(), "core refused the token; fetching a new one");
                    self.tokens.invalidate().await;
                    retried = true;
                }
                Err(status) => {
                    debug!(code = ?status.code(), message = status.message(), "core call failed");
                    return Err(status.into());
                }
            }
        }
    }

    /// Sends `message` once with `token` (a subscriber's own): renewing it is for whoever
    /// holds its refresh token, not for this connection.
    pub(crate) async fn with_user_token<M, R, F, Fut>(
        &self,
        call: F,
        message: M,
        token: &Secret,
    ) -> Result<R, ClientError>
    where
        F: FnOnce(Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let mut request = Request::new(message);
        let mut value = MetadataValue::try_from(format!("Bearer {}", token.expose()))
            .map_err(|_| ClientError::Invalid("the user token holds characters not allowed in a header".into()))?;
        value.set_sensitive(true);
        request.metadata_mut().insert("authorization", value);
        match call(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => {
                debug!(code = ?status.code(), message = status.message(), "core call with a user token failed");
                Err(status.into())
            }
        }
    }

    fn can_renew(&self) -> bool {
        matches!(
            self.tokens.credentials(),
            Credentials::ClientCredentials(_) | Credentials::Bearer(super::auth::BearerSource::File(_))
        )
    }
}

/// Subscribers' own access tokens (the authorization code flow), by number. A registration
/// whose subscriber has one goes out with it and without `phone_number`: the token names the
/// subscription. A subscriber whose consent is gone is kept as withdrawn: their registration
/// is refused here rather than made with the connection's own credentials. Kept fresh by
/// whoever holds the refresh tokens; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct UserTokens(Arc<RwLock<HashMap<Msisdn, UserToken>>>);

#[derive(Debug, Clone)]
enum UserToken {
    Current(Secret),
    Withdrawn,
}

impl UserTokens {
    /// `number`'s token from now on.
    pub fn set(&self, number: Msisdn, token: Secret) {
        self.0.write().insert(number, UserToken::Current(token));
    }

    /// `number` withdrew consent (or its token cannot be used): no registration for it.
    pub fn withdraw(&self, number: Msisdn) {
        self.0.write().insert(number, UserToken::Withdrawn);
    }

    /// `number`'s token, if it has a current one.
    pub fn get(&self, number: &Msisdn) -> Option<Secret> {
        match self.0.read().get(number) {
            Some(UserToken::Current(token)) => Some(token.clone()),
            _ => None,
        }
    }

    /// Whether `number` withdrew consent.
    pub fn is_withdrawn(&self, number: &Msisdn) -> bool {
        matches!(self.0.read().get(number), Some(UserToken::Withdrawn))
    }
}

/// A client of SipBreakoutService.
#[derive(Debug, Clone)]
pub struct RegistrationClient {
    grpc: SipBreakoutServiceClient<Channel>,
    core: CoreConnection,
    user_tokens: UserTokens,
}

impl RegistrationClient {
    /// Prepares a client; the connection is made on first use and re-made after failures.
    pub fn new(api: &CoreApiConfig, credentials: Credentials) -> Result<Self, ClientError> {
        Ok(Self::over(CoreConnection::new(api, credentials)?))
    }

    /// A client over `core`, shared with other services' clients.
    pub fn over(core: CoreConnection) -> Self {
        Self { grpc: SipBreakoutServiceClient::new(core.channel()), core, user_tokens: UserTokens::default() }
    }

    /// This client registering the subscribers in `tokens` with their own tokens.
    pub fn with_user_tokens(self, tokens: UserTokens) -> Self {
        Self { user_tokens: tokens, ..self }
    }

    /// `registration` as sent with the subscriber's own token (no `phone_number`), and the
    /// token, when the subscriber has one.
    fn as_user(&self, registration: &Registration) -> Option<(Registration, Secret)> {
        let token = self.user_tokens.get(registration.phone_number.as_ref()?)?;
        Some((Registration { phone_number: None, ..registration.clone() }, token))
    }

    /// The connection, for other services' clients.
    pub fn connection(&self) -> &CoreConnection {
        &self.core
    }

    /// Creates or replaces `registration` at the core. NOT_ACCEPTABLE comes back as a response.
    pub async fn upsert(&self, registration: &Registration) -> Result<UpsertRegistrationResponse, ClientError> {
        let started = std::time::Instant::now();
        let result = self.upsert_once(registration).await;
        count_core_call("UpsertRegistration", result.as_ref().err(), started);
        result
    }

    async fn upsert_once(&self, registration: &Registration) -> Result<UpsertRegistrationResponse, ClientError> {
        if registration.phone_number.as_ref().is_some_and(|number| self.user_tokens.is_withdrawn(number)) {
            return Err(ClientError::Invalid("the subscriber withdrew consent: not registered".into()));
        }
        if let Some((own, token)) = self.as_user(registration) {
            let message = UpsertRegistrationRequest { registration: Some((&own).into()) };
            let mut grpc = self.grpc.clone();
            return self
                .core
                .with_user_token(|request| async move { grpc.upsert_registration(request).await }, message, &token)
                .await;
        }
        self.check(registration)?;
        let message = UpsertRegistrationRequest { registration: Some(registration.into()) };
        self.core
            .with_token(
                |request| {
                    let mut grpc = self.grpc.clone();
                    async move { grpc.upsert_registration(request).await }
                },
                message,
            )
            .await
    }

    /// Removes `registration` (same `sip_uri` as upserted) from the core.
    pub async fn delete(&self, registration: &Registration) -> Result<DeleteRegistrationResponse, ClientError> {
        let started = std::time::Instant::now();
        let result = self.delete_once(registration).await;
        count_core_call("DeleteRegistration", result.as_ref().err(), started);
        result
    }

    async fn delete_once(&self, registration: &Registration) -> Result<DeleteRegistrationResponse, ClientError> {
        if let Some((own, token)) = self.as_user(registration) {
            let message = DeleteRegistrationRequest { registration: Some((&own).into()) };
            let mut grpc = self.grpc.clone();
            return self
                .core
                .with_user_token(|request| async move { grpc.delete_registration(request).await }, message, &token)
                .await;
        }
        self.check(registration)?;
        let message = DeleteRegistrationRequest { registration: Some(registration.into()) };
        self.core
            .with_token(
                |request| {
                    let mut grpc = self.grpc.clone();
                    async move { grpc.delete_registration(request).await }
                },
                message,
            )
            .await
    }

    fn check(&self, registration: &Registration) -> Result<(), ClientError> {
        if self.core.credentials().requires_phone_number() && registration.phone_number.is_none() {
            return Err(ClientError::Invalid(
                "a phone number is required with client credentials: the core cannot tell which subscriber is meant"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// `ringer_core_requests_total{method,code}` and `ringer_core_request_seconds{method}`: each
/// call to the operator's API, by its gRPC code (`OK`, `UNAUTHENTICATED`...; `LOCAL` when it
/// never left: a refused registration or no token).
pub(crate) fn count_core_call(method: &'static str, error: Option<&ClientError>, started: std::time::Instant) {
    let code = match error {
        None => "OK",
        Some(ClientError::Status { code, .. }) => match code {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Unavailable => "UNAVAILABLE",
            Code::Internal => "INTERNAL",
            Code::Unimplemented => "UNIMPLEMENTED",
            _ => "OTHER",
        },
        Some(ClientError::Endpoint(_) | ClientError::Invalid(_) | ClientError::Auth(_)) => "LOCAL",
    };
    metrics::counter!("ringer_core_requests_total", "method" => method, "code" => code).increment(1);
    metrics::histogram!("ringer_core_request_seconds", "method" => method).record(started.elapsed().as_secs_f64());
}

fn tls_config(ca_file: Option<&Path>) -> Result<ClientTlsConfig, ClientError> {
    let config = ClientTlsConfig::new().with_native_roots();
    match ca_file {
        None => Ok(config),
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|error| ClientError::Endpoint(format!("cannot read CA file {}: {error}", path.display())))?;
            Ok(config.ca_certificate(Certificate::from_pem(pem)))
        }
    }
}
