-- Several instances share the subscribers; each subscriber's registration is refreshed by
-- exactly one live instance, the holder of its lease. Times are milliseconds since the Unix
-- epoch on the writer's clock (instances are expected to keep NTP time).

-- The instances that have shown themselves, with their last heartbeat.
CREATE TABLE instances (
    instance TEXT PRIMARY KEY,
    contact TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

-- One row per subscriber: who refreshes its registration ('' when nobody does), and until
-- when the core holds it, so that a new holder refreshes it in time rather than at once.
CREATE TABLE registration_leases (
    phone_number TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    registered_until BIGINT
);
CREATE INDEX registration_leases_instance ON registration_leases (instance);
