-- Voicemail messages: metadata and the audio (a WAV file, 16-bit PCM, mono, 8 kHz) in one row,
-- so that any instance lists and plays a message another recorded. Recording happens in the
-- recording instance's spool folder (crash-safe); a message is written here once whole, or
-- recovered after a crash and marked partial.
CREATE TABLE voicemail_messages (
    id TEXT PRIMARY KEY,
    subscriber TEXT NOT NULL,
    caller TEXT,
    callee TEXT,
    direction TEXT,
    recorded_at TEXT NOT NULL,
    duration_ms BIGINT NOT NULL,
    codec TEXT NOT NULL,
    partial BIGINT NOT NULL,
    instance TEXT NOT NULL,
    audio BYTEA NOT NULL
);
CREATE INDEX voicemail_messages_subscriber ON voicemail_messages (subscriber, id);
