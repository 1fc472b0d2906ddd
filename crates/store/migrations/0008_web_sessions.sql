-- The self-care web page: sessions of subscribers logged in (a SHA-256 hash of each session
-- cookie, never the cookie), and one-time PINs sent by SMS for a first login (a PBKDF2 hash,
-- never the PIN), each with its expiry.
CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY,
    subscriber TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE login_pins (
    subscriber TEXT PRIMARY KEY,
    pin_hash TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    sent_ms BIGINT NOT NULL
);
