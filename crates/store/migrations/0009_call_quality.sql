-- Call records say who ended the call, the codec agreed, and what arrived of the caller's
-- media when the TAS answered (RFC 3550 receiver statistics); empty for older records.
ALTER TABLE call_records ADD COLUMN ended_by TEXT;
ALTER TABLE call_records ADD COLUMN codec TEXT;
ALTER TABLE call_records ADD COLUMN packets_received BIGINT;
ALTER TABLE call_records ADD COLUMN packets_lost BIGINT;
ALTER TABLE call_records ADD COLUMN jitter_us BIGINT;
