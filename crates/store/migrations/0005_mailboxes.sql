-- Mailboxes a subscriber can use: each message's state (new until heard; heard, saved or
-- deleted after) and when it last changed, for the retention limits; the owner's greetings
-- (WAV, 8 kHz mono); the mailbox's PIN (a salted PBKDF2 hash, never the PIN) with its failed
-- logins and lockout; and the HTTP API's bearer tokens (a SHA-256 hash of each, never the
-- token), each limited to one mailbox or, without one, for all (admin).
ALTER TABLE voicemail_messages ADD COLUMN state TEXT NOT NULL DEFAULT 'new';
ALTER TABLE voicemail_messages ADD COLUMN state_changed_ms BIGINT NOT NULL DEFAULT 0;

CREATE TABLE voicemail_greetings (
    subscriber TEXT NOT NULL,
    kind TEXT NOT NULL,
    audio BYTEA NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (subscriber, kind)
);

CREATE TABLE voicemail_mailboxes (
    subscriber TEXT PRIMARY KEY,
    pin_hash TEXT,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until_ms BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    mailbox TEXT,
    label TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
