//! `ringer register` / `ringer unregister`: the command-line twin of the operator docs' grpcurl example.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use ringer::config::serve::CoreApiConfig;
use ringer::proto::sipbreakout::v1::StatusCode;
use ringer::proto::{delete_response_json, upsert_response_json};
use ringer::registrar::auth::{read_secret_file, secret_from_env, BearerSource, ClientCredentials, Credentials};
use ringer::registrar::{ClientError, RegistrationClient};
use ringer::types::{Msisdn, Prefix, Registration, RouteType, SipsUri};

/// Environment variable read for a static bearer token when no --token-file is given.
const TOKEN_ENV: &str = "RINGER_TOKEN";
/// Environment variable read for the OAuth client secret when no --client-secret-file is given.
const CLIENT_SECRET_ENV: &str = "RINGER_CLIENT_SECRET";

/// Which API method to call.
#[derive(Debug, Clone, Copy)]
pub(super) enum Operation {
    Upsert,
    Delete,
}

/// Arguments shared by `register` and `unregister`. Secrets are read from files or the
/// environment, never from arguments, which other users can see in `ps`.
#[derive(Debug, Args)]
pub(super) struct RegistrationArgs {
    /// The core's gRPC API, e.g. https://api.shamrock.wgtwo.com:443 or http://127.0.0.1:50051.
    #[arg(long, env = "RINGER_ENDPOINT", value_name = "URL")]
    endpoint: String,
    /// The subscriber, E.164 (may be left out with a user's own token).
    #[arg(long, value_name = "E164")]
    phone_number: Option<Msisdn>,
    /// Where the core sends calls: sips:host (DNS SRV) or sips:host:port.
    #[arg(long, value_name = "SIPS_URI")]
    sip_uri: SipsUri,
    /// loop, loop-mo, loop-mt, fork, fallback or ingress.
    #[arg(long, value_name = "TYPE")]
    route_type: RouteType,
    /// Prefix the core inserts for calls the subscriber makes.
    #[arg(long, value_name = "DIGITS")]
    mo_prefix: Option<Prefix>,
    /// Prefix the core inserts for calls the subscriber receives.
    #[arg(long, value_name = "DIGITS")]
    mt_prefix: Option<Prefix>,
    /// PEM CA bundle to trust for an https endpoint, instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// File holding a bearer token (else $RINGER_TOKEN is used when set).
    #[arg(long, value_name = "FILE", conflicts_with = "client_id")]
    token_file: Option<PathBuf>,
    /// OAuth 2.0 client id for client credentials; the secret comes from --client-secret-file or $RINGER_CLIENT_SECRET.
    #[arg(long, env = "RINGER_CLIENT_ID", value_name = "ID")]
    client_id: Option<String>,
    /// File holding the OAuth 2.0 client secret.
    #[arg(long, value_name = "FILE", requires = "client_id")]
    client_secret_file: Option<PathBuf>,
    /// OAuth 2.0 token endpoint.
    #[arg(long, value_name = "URL", default_value = "https://id.wgtwo.com/oauth2/token")]
    token_url: String,
    /// OAuth 2.0 scope to ask for.
    #[arg(long, default_value = "call.routing:write")]
    scope: String,
    /// Time allowed for the call.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

impl RegistrationArgs {
    fn credentials(&self) -> anyhow::Result<Credentials> {
        if let Some(client_id) = &self.client_id {
            let client_secret = match &self.client_secret_file {
                Some(path) => read_secret_file(path)?,
                None => secret_from_env(CLIENT_SECRET_ENV)
                    .context("--client-id needs --client-secret-file or $RINGER_CLIENT_SECRET")?,
            };
            return Ok(Credentials::ClientCredentials(ClientCredentials {
                token_url: self.token_url.clone(),
                client_id: client_id.clone(),
                client_secret,
                scope: self.scope.clone(),
            }));
        }
        if let Some(path) = &self.token_file {
            read_secret_file(path)?;
            return Ok(Credentials::Bearer(BearerSource::File(path.clone())));
        }
        match secret_from_env(TOKEN_ENV) {
            Ok(token) => Ok(Credentials::Bearer(BearerSource::Value(token))),
            Err(_) => Ok(Credentials::None),
        }
    }

    fn registration(&self) -> Registration {
        Registration {
            phone_number: self.phone_number.clone(),
            sip_uri: self.sip_uri.clone(),
            route_type: self.route_type,
            mo_prefix: self.mo_prefix.clone(),
            mt_prefix: self.mt_prefix.clone(),
        }
    }
}

/// Calls the core once and prints its answer as grpcurl would.
pub(super) async fn run(operation: Operation, args: RegistrationArgs) -> anyhow::Result<ExitCode> {
    let api = CoreApiConfig {
        endpoint: args.endpoint.clone(),
        ca_file: args.ca_file.clone(),
        connect_timeout: args.timeout,
        request_timeout: args.timeout,
    };
    let client = RegistrationClient::new(&api, args.credentials()?)?;
    let registration = args.registration();
    let answer =
        match operation {
            Operation::Upsert => client.upsert(&registration).await.map(|response| {
                (response.status_code, response.error_message.clone(), upsert_response_json(&response))
            }),
            Operation::Delete => client.delete(&registration).await.map(|response| {
                (response.status_code, response.error_message.clone(), delete_response_json(&response))
            }),
        };
    match answer {
        Ok((status_code, error_message, json)) => {
            println!("{}", serde_json::to_string_pretty(&json)?);
            if status_code == StatusCode::Ok as i32 {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("error: the core did not accept the request: {error_message}");
                Ok(ExitCode::FAILURE)
            }
        }
        Err(ClientError::Status { code, message }) => {
            eprintln!("ERROR:\n  Code: {code:?}\n  Message: {message}");
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error.into()),
    }
}
