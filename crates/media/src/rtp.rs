//! The sending side of one RTP stream: its SSRC, and the sequence number and timestamp that
//! move on with each packet (RFC 3550 §5.1); and the receiving side's statistics, counted as
//! an RTCP receiver report counts them (RFC 3550 §6.4.1, appendices A.1, A.3 and A.8).

use std::time::{Duration, Instant};

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

/// A jump in sequence numbers beyond this is a reordered or restarted packet, not a loss
/// (RFC 3550 A.1's `MAX_DROPOUT`).
const MAX_DROPOUT: u16 = 3000;

/// What arrived of the peer's stream: packets, the losses the sequence numbers show, and the
/// interarrival jitter. A new SSRC, or a jump in sequence numbers that the next packet
/// confirms (a peer that restarted its stream), starts a new count on top of the old one.
#[derive(Debug, Clone)]
pub struct Reception {
    clock_rate: u32,
    started: Instant,
    ssrc: Option<u32>,
    /// The first sequence number of the current run, and the highest seen with its wrap count.
    first: Option<u16>,
    highest: u16,
    cycles: u64,
    /// Packets expected in the runs before the current one.
    expected_before: u64,
    received: u64,
    /// A sequence number far from the run: the next one after it confirms a restart.
    restart: Option<u16>,
    /// The last packet's transit time, in clock ticks (RFC 3550 A.8).
    transit: Option<i64>,
    /// The interarrival jitter estimate, in clock ticks.
    jitter: f64,
}

/// The summary of a [`Reception`], as a call record shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceptionSummary {
    /// Packets received.
    pub received: u64,
    /// Packets expected but not received (RFC 3550 §6.4.1's cumulative number lost, never below 0).
    pub lost: u64,
    /// The interarrival jitter at the end.
    pub jitter: Duration,
}

impl Reception {
    /// Statistics of a stream on a `clock_rate` Hz clock.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            started: Instant::now(),
            ssrc: None,
            first: None,
            highest: 0,
            cycles: 0,
            expected_before: 0,
            received: 0,
            restart: None,
            transit: None,
            jitter: 0.0,
        }
    }

    /// Counts a packet of `ssrc` with `sequence`; `timestamp`, when given (audio read as it
    /// arrives, not events whose timestamps stay on the event's start), feeds the jitter with
    /// its arrival `at`.
    pub fn on_packet(&mut self, ssrc: u32, sequence: u16, timestamp: Option<u32>, at: Instant) {
        self.received += 1;
        if self.ssrc != Some(ssrc) {
            self.ssrc = Some(ssrc);
            self.start_run(sequence);
        } else {
            let ahead = sequence.wrapping_sub(self.highest);
            if ahead > 0 && ahead < MAX_DROPOUT {
                if sequence < self.highest {
                    self.cycles += 1;
                }
                self.highest = sequence;
                self.restart = None;
            } else if (MAX_DROPOUT..u16::MAX - MAX_DROPOUT).contains(&ahead) {
                // Far off: a restart if the next packet follows this one (RFC 3550 A.1's bad_seq).
                match self.restart {
                    Some(previous) if sequence == previous.wrapping_add(1) => self.start_run(previous),
                    _ => self.restart = Some(sequence),
                }
                if self.restart.is_none() {
                    self.highest = sequence;
                }
            }
        }
        if let Some(timestamp) = timestamp {
            let arrival =
                (at.saturating_duration_since(self.started).as_secs_f64() * f64::from(self.clock_rate)) as i64;
            // RTP timestamps wrap at 2^32: the difference is taken in that ring.
            let transit = arrival.wrapping_sub(i64::from(timestamp)) as i32 as i64;
            if let Some(last) = self.transit {
                let change = (transit.wrapping_sub(last) as i32).unsigned_abs() as f64;
                self.jitter += (change - self.jitter) / 16.0;
            }
            self.transit = Some(transit);
        }
    }

    /// A new run of sequence numbers from `sequence`: what the old one expected is kept.
    fn start_run(&mut self, sequence: u16) {
        self.expected_before += self.expected_in_run();
        self.first = Some(sequence);
        self.highest = sequence;
        self.cycles = 0;
        self.restart = None;
        // A new stream's timestamps have a new origin.
        self.transit = None;
    }

    fn expected_in_run(&self) -> u64 {
        match self.first {
            Some(first) => (self.cycles * 65536 + u64::from(self.highest) + 1).saturating_sub(u64::from(first)),
            None => 0,
        }
    }

    /// Packets received, lost, and the jitter now.
    pub fn summary(&self) -> ReceptionSummary {
        let expected = self.expected_before + self.expected_in_run();
        ReceptionSummary {
            received: self.received,
            lost: expected.saturating_sub(self.received),
            jitter: Duration::from_secs_f64(self.jitter / f64::from(self.clock_rate)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packets `sequences` 20 ms apart at 8 kHz, each arriving `late(i)` after its time.
    fn receive(sequences: &[u16], late: impl Fn(usize) -> Duration) -> ReceptionSummary {
        let mut reception = Reception::new(8000);
        let start = reception.started;
        for (i, sequence) in sequences.iter().enumerate() {
            let timestamp = 1_000u32.wrapping_add(u32::from(sequence.wrapping_sub(sequences[0])) * 160);
            let at = start + Duration::from_millis(20 * i as u64) + late(i);
            reception.on_packet(7, *sequence, Some(timestamp), at);
        }
        reception.summary()
    }

    #[test]
    fn a_steady_stream_loses_nothing_and_has_no_jitter() {
        let summary = receive(&(0..50).collect::<Vec<_>>(), |_| Duration::ZERO);
        assert_eq!((summary.received, summary.lost), (50, 0));
        assert!(summary.jitter < Duration::from_micros(200), "{summary:?}");
    }

    #[test]
    fn gaps_count_as_lost_across_the_sequence_wrap() {
        // 65533..=65535, then 0..=5 with 65535 and 2 missing: 9 sent after the first, 2 lost.
        let sequences = [65533, 65534, 0, 1, 3, 4, 5];
        let summary = receive(&sequences, |_| Duration::ZERO);
        assert_eq!((summary.received, summary.lost), (7, 2), "{summary:?}");
    }

    #[test]
    fn a_late_packet_is_not_lost_and_a_duplicate_does_not_hide_a_loss() {
        let summary = receive(&[10, 12, 11, 13, 13, 15], |_| Duration::ZERO);
        // Expected 10..=15 (6), received 6 with one twice: the loss of 14 is hidden, as in RFC 3550.
        assert_eq!((summary.received, summary.lost), (6, 0));
    }

    #[test]
    fn a_restarted_stream_is_counted_on_not_hidden() {
        let mut reception = Reception::new(8000);
        let at = reception.started;
        for sequence in 100..110 {
            reception.on_packet(7, sequence, None, at);
        }
        // The peer restarts at 40000 (confirmed by 40001), then loses 40003.
        for sequence in [40000, 40001, 40002, 40004] {
            reception.on_packet(7, sequence, None, at);
        }
        assert_eq!((reception.summary().received, reception.summary().lost), (14, 1));
        // A new SSRC starts a run of its own: its losses count too.
        for sequence in [5, 6, 8] {
            reception.on_packet(9, sequence, None, at);
        }
        assert_eq!((reception.summary().received, reception.summary().lost), (17, 2));
    }

    #[test]
    fn arrival_spread_shows_as_jitter() {
        // Every other packet 10 ms late: |D| is 80 ticks each time; the estimate nears 80 ticks (10 ms).
        let summary =
            receive(&(0..400).collect::<Vec<_>>(), |i| Duration::from_millis(if i % 2 == 1 { 10 } else { 0 }));
        assert!(summary.jitter > Duration::from_millis(8) && summary.jitter < Duration::from_millis(11), "{summary:?}");
    }

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
