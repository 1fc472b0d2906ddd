-- Subscribers who enabled the product through the operator's consent (OAuth 2.0 authorization
-- code flow): their tokens, sealed by the TAS (the store sees ciphertext only), when the access
-- token is to be refreshed, and which instance is refreshing it. A withdrawn consent stays as
-- a row with its tokens wiped, for the status view.
CREATE TABLE consents (
    subscriber TEXT PRIMARY KEY,
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    scope TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    refresh_at_ms BIGINT NOT NULL,
    refreshing_until_ms BIGINT NOT NULL,
    state TEXT NOT NULL,
    note TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX consents_refresh_at ON consents (refresh_at_ms);
