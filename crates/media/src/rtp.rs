//! The sending side of one RTP stream: its SSRC, and the sequence number and timestamp that
//! move on with each packet (RFC 3550 §5.1).

/// One outgoing RTP stream.
#[derive(Debug)]
pub struct RtpStream {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
}

impl RtpStream {
    /// A stream with SSRC `ssrc`, its sequence number and timestamp starting at random.
    pub fn new(ssrc: u32) -> Self {
        Self { ssrc, sequence: rand::random(), timestamp: rand::random() }
    }

    /// The next packet: `payload` at the current timestamp; the sequence number moves on.
    pub fn packet(&mut self, payload_type: u8, marker: bool, payload: Vec<u8>) -> rtc::rtp::Packet {
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type,
                marker,
                sequence_number: self.sequence,
                timestamp: self.timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: payload.into(),
        };
        self.sequence = self.sequence.wrapping_add(1);
        packet
    }

    /// Moves the timestamp on by `ticks` of the codec's clock (after a frame, after an event).
    pub fn advance(&mut self, ticks: u32) {
        self.timestamp = self.timestamp.wrapping_add(ticks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_moves_per_packet_and_timestamp_per_advance() {
        let mut stream = RtpStream::new(7);
        let first = stream.packet(8, true, vec![1]);
        let second = stream.packet(8, false, vec![2]);
        stream.advance(160);
        let third = stream.packet(101, false, vec![3]);
        assert_eq!(first.header.ssrc, 7);
        assert!(first.header.marker && !second.header.marker);
        assert_eq!(second.header.sequence_number, first.header.sequence_number.wrapping_add(1));
        assert_eq!(second.header.timestamp, first.header.timestamp, "no advance, same timestamp");
        assert_eq!(third.header.timestamp, first.header.timestamp.wrapping_add(160));
        assert_eq!(third.header.payload_type, 101);
    }
}
