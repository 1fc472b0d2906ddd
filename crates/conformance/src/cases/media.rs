//! The media checks of an answered call: ICE and DTLS through the harness's relay, no RTP from
//! the TAS before DTLS-SRTP keys can exist, audio back that is not silence, and a mid-call
//! re-offer that keeps the media going. The call family runs all of them; the race family only
//! connects the media before racing over it.

use std::time::Duration;

use bytes::Bytes;

use media::peer::OfferingPeer;

use super::placing::{audio_answer, Established};
use crate::relay;

/// ICE and DTLS up with the call's answer, through the relay.
pub(crate) async fn connect_media(up: &mut Established) -> Result<(), String> {
    let answer = match (&up.relay, relay::first_candidate(&up.answer)) {
        (Some(relay), Some(tas)) => {
            relay.set_tas(tas);
            relay::through(&up.answer, relay.peer_side())
        }
        _ => up.answer.clone(),
    };
    up.peer.accept(&answer, Duration::from_secs(10)).await.map_err(|error| error.to_string())
}

/// A new offer in the call: answered with SDP, the connection stays up, and where audio
/// came back before (an echo, the far end; not a voicemail recording in silence) it still
/// does.
pub(crate) async fn reoffer(
    call: &sip::call::CallHandle,
    peer: &mut OfferingPeer,
    relay: Option<&relay::MediaRelay>,
) -> Result<String, String> {
    let tone = media::apps::tone(1000.0, 600, 10000.0);
    let loud = |heard: &[i16]| heard.iter().filter(|sample| sample.unsigned_abs() > 300).count();
    peer.play(&tone).await;
    let before = loud(&peer.heard(Duration::from_millis(300)).await);
    let offer = peer.reoffer().await.map_err(|error| error.to_string())?;
    let offer = match relay {
        Some(relay) => relay::through(&offer, relay.tas_side()),
        None => offer,
    };
    let body = call.reinvite(Bytes::from(offer.to_string())).await.map_err(|error| format!("re-INVITE: {error}"))?;
    let Some(answer) = audio_answer(&body) else {
        return Err(format!("a 2xx without an SDP answer:\n{}", String::from_utf8_lossy(&body)));
    };
    let answer = match relay {
        Some(relay) => relay::through(&answer, relay.peer_side()),
        None => answer,
    };
    peer.accept_reanswer(&answer).await.map_err(|error| error.to_string())?;
    peer.play(&tone).await;
    let after = loud(&peer.heard(Duration::from_millis(300)).await);
    if !peer.is_connected() {
        return Err("ICE or DTLS went down after the re-INVITE".into());
    }
    if before >= 400 && after < 400 {
        return Err(format!("audio stopped: {before} loud samples before the re-INVITE, {after} after"));
    }
    Ok(format!("re-INVITE answered; media on ({before} / {after} loud samples before / after)"))
}

/// ICE and DTLS complete with the answer, a second of tone goes out, and what comes back
/// (an echo, a greeting, the far end) is not silence.
pub(crate) async fn audio_both_ways(up: &mut Established) -> Result<(), String> {
    connect_media(up).await?;
    let (peer, relay) = (&mut up.peer, up.relay.as_ref());
    // No media before DTLS: RTP from the TAS before its handshake can have finished cannot
    // be protected.
    match relay.map(relay::MediaRelay::firsts).and_then(|firsts| firsts.early_media()) {
        Some(relay::EarlyMedia::BeforeHandshake) => {
            return Err("RTP from the TAS before the DTLS handshake (RFC 5763 §5: no media before DTLS-SRTP keys)".into())
        }
        Some(relay::EarlyMedia::DuringHandshake) => {
            return Err("RTP from the TAS during the DTLS handshake, before the harness's ChangeCipherSpec (RFC 5763 §5: no media before DTLS-SRTP keys)".into())
        }
        None => {}
    }
    peer.play(&media::apps::tone(1000.0, 1000, 10000.0)).await;
    let heard = peer.heard(Duration::from_millis(400)).await;
    let loud = heard.iter().filter(|sample| sample.unsigned_abs() > 300).count();
    if loud < 800 {
        return Err(format!("{} samples heard, {loud} above -40 dBFS", heard.len()));
    }
    Ok(())
}
