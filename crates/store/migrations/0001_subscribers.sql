-- Subscribers: what the TAS registers with the core and how it treats each one's calls.
-- Behaviours are kept as JSON, in the shape of the config's `mo` and `mt` values; the store
-- does not read them. Written in the SQL both SQLite and PostgreSQL accept.
CREATE TABLE subscribers (
    phone_number TEXT PRIMARY KEY,
    route_type TEXT NOT NULL,
    mo_prefix TEXT,
    mt_prefix TEXT,
    mo_behaviour TEXT,
    mt_behaviour TEXT,
    updated_at BIGINT NOT NULL
);

-- One row, counted up by every change, so that running instances see a change by reading one number.
CREATE TABLE store_revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL
);
INSERT INTO store_revision (id, revision) VALUES (1, 0);
