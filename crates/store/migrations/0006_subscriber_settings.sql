-- What a subscriber sets for themselves (call forwarding, do-not-disturb, voicemail on or
-- off), over the configured behaviours: JSON the TAS writes and reads, one row per subscriber.
CREATE TABLE subscriber_settings (
    subscriber TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
