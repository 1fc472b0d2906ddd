//! A call in a dialog, as the layer above holds it: to end it, renegotiate, acknowledge the
//! peer's 2xx, and wait for what the peer does.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::core::UserAgent;
use crate::dialog::{Dialog, DialogError, DialogId, IncomingOffer};
use crate::message::{Method, StatusCode};
use crate::transport::Link;

/// A call in a dialog (answered by ringer, or answered by the peer ringer called): to end it,
/// renegotiate, and wait for what the peer does.
#[derive(Clone)]
pub struct CallHandle {
    pub(crate) dialog: Arc<Dialog>,
    pub(crate) ua: UserAgent,
}

impl std::fmt::Debug for CallHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallHandle({:?})", self.dialog.id)
    }
}

impl CallHandle {
    /// The dialog.
    pub fn id(&self) -> &DialogId {
        &self.dialog.id
    }

    /// The link the dialog's requests use while open.
    pub fn link(&self) -> &Link {
        &self.dialog.link
    }

    /// Ends the call with BYE; returns the BYE's final status.
    pub async fn hangup(&self) -> Result<StatusCode, DialogError> {
        self.ua.hangup(&self.dialog.id).await
    }

    /// Resolves when the dialog ends, with why (BYE from the peer, our BYE, no ACK...).
    pub async fn ended(&self) -> String {
        self.dialog.ended.cancelled().await;
        self.dialog.state().end_reason.clone().unwrap_or_default()
    }

    /// Whether the peer ended the dialog with its BYE (not ringer, a timer or a missing ACK).
    pub fn ended_by_peer(&self) -> bool {
        self.dialog.ended_by_peer()
    }

    /// Whether the dialog has ended.
    pub fn is_ended(&self) -> bool {
        self.dialog.ended.is_cancelled()
    }

    /// Resolves with the body of the ACK for our 2xx (empty when it carried none), or `None`
    /// when the dialog ended without one.
    pub async fn acked(&self) -> Option<Bytes> {
        tokio::select! {
            biased;
            () = self.dialog.confirmed.cancelled() => Some(self.dialog.state().ack_body.clone().unwrap_or_default()),
            () = self.dialog.ended.cancelled() => None,
        }
    }

    /// Whether the INVITE that made the dialog carried the SDP offer; when it did not, the 2xx
    /// carried it and the ACK must carry the answer (RFC 3264 §5, RFC 3261 §13.2.2.4).
    pub fn invite_had_offer(&self) -> bool {
        self.dialog.invite_had_offer
    }

    /// Sends the ACK for the peer's 2xx (a call ringer placed), with `body` when the 2xx carried
    /// an offer; retransmitted 2xx get the same ACK again. Its CSeq is the INVITE's (RFC 3261
    /// §13.2.2.4), whatever PRACKs came between.
    pub fn ack(&self, body: Option<Bytes>) -> Result<(), DialogError> {
        let dialog = &self.dialog;
        let ack = self.ua.in_dialog_request(dialog, &dialog.link, Method::Ack, dialog.invite_cseq, body)?;
        let bytes = Bytes::from(ack.to_bytes());
        {
            let mut state = dialog.state();
            state.sent_ack = Some(bytes.clone());
            state.acked = true;
        }
        crate::metrics::sent_request(&Method::Ack);
        dialog.link.send(bytes).map_err(|error| DialogError::Request(error.into()))
    }

    /// Takes the peer's new offers (re-INVITE, UPDATE) from here on, instead of the session
    /// handler.
    pub fn offers(&self) -> mpsc::UnboundedReceiver<IncomingOffer> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.dialog.state().offers = Some(sender);
        receiver
    }

    /// Sends a re-INVITE with `sdp` and returns the peer's answer (the 2xx is ACKed here).
    /// Refused with [`DialogError::Busy`] while another INVITE of ours is under way in the
    /// dialog (RFC 3261 §14.1).
    pub async fn reinvite(&self, sdp: Bytes) -> Result<Bytes, DialogError> {
        let response = self.ua.update_session(&self.dialog, Method::Invite, Some(sdp)).await?;
        match response.status {
            status if status.is_success() => Ok(response.body),
            status => Err(DialogError::Refused(status)),
        }
    }
}
