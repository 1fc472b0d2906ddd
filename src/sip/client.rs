//! Client non-INVITE transactions (RFC 3261 §17.1.2) for the requests the TAS sends (BYE now):
//! Timer E retransmits on UDP, Timer F gives up with a 408, responses are matched by branch.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::oneshot;
use tracing::debug;

use super::message::header::Via;
use super::message::{Request, Response};
use super::transaction::Timers;
use super::transport::{Link, SendError};

/// Why a request got no final response.
#[derive(Debug, Error)]
pub enum RequestError {
    /// It could not be sent.
    #[error("could not send: {0}")]
    Send(#[from] SendError),
    /// Timer F: no final response in 64·T1 (treated as 408 Request Timeout).
    #[error("no response (Timer F)")]
    Timeout,
}

struct Pending {
    reply: oneshot::Sender<Response>,
}

/// The client transactions under way, by branch.
#[derive(Default)]
pub struct ClientTransactions {
    pending: Mutex<HashMap<String, Pending>>,
}

impl ClientTransactions {
    fn pending(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Client transactions under way.
    pub fn live(&self) -> usize {
        self.pending().len()
    }

    /// Hands a response to its transaction; `false` if none matches (a stray response).
    pub fn on_response(&self, response: Response) -> bool {
        let branch = response
            .headers
            .get("Via")
            .and_then(|via| super::message::header::split_list(via).next().map(str::to_owned))
            .and_then(|via| Via::parse(&via).ok())
            .and_then(|via| via.branch().map(str::to_owned));
        let Some(branch) = branch else { return false };
        if response.status < 200 {
            // Provisionals only stop retransmissions on UDP (Timer E keeps its T2 pace); the
            // transaction waits for the final response.
            return self.pending().contains_key(&branch);
        }
        match self.pending().remove(&branch) {
            Some(pending) => {
                let _ = pending.reply.send(response);
                true
            }
            None => false,
        }
    }

    /// Sends a non-INVITE request on `link` and waits for its final response. The request's top
    /// Via must carry a unique branch.
    pub async fn send(&self, request: &Request, link: &Link, timers: Timers) -> Result<Response, RequestError> {
        let branch = request
            .headers
            .get("Via")
            .and_then(|via| Via::parse(via).ok())
            .and_then(|via| via.branch().map(str::to_owned))
            .unwrap_or_default();
        let (reply, response) = oneshot::channel();
        self.pending().insert(branch.clone(), Pending { reply });
        let bytes = Bytes::from(request.to_bytes());
        if let Err(error) = link.send(bytes.clone()) {
            self.pending().remove(&branch);
            return Err(error.into());
        }
        let deadline = tokio::time::Instant::now() + timers.t1 * 64;
        let mut response = std::pin::pin!(response);
        let mut interval = timers.t1;
        loop {
            // Timer E on UDP; on streams only Timer F runs.
            let wake = if link.transport().is_reliable() {
                deadline
            } else {
                (tokio::time::Instant::now() + interval).min(deadline)
            };
            tokio::select! {
                answer = &mut response => {
                    return answer.map_err(|_| RequestError::Timeout);
                }
                () = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= deadline {
                        self.pending().remove(&branch);
                        debug!(%branch, "Timer F: no final response");
                        return Err(RequestError::Timeout);
                    }
                    let _ = link.send(bytes.clone());
                    interval = (interval * 2).min(timers.t2);
                }
            }
        }
    }
}
