-- Call detail records: one row per call the core brought as leg 2. Times are milliseconds
-- since the Unix epoch; lists (leg 3 Call-IDs, actions) are JSON arrays of strings.
CREATE TABLE call_records (
    record_id TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    call_id TEXT NOT NULL,
    leg3_call_ids TEXT NOT NULL,
    request_uri TEXT NOT NULL,
    subscriber TEXT,
    direction TEXT,
    route_type TEXT,
    prefix TEXT,
    caller TEXT,
    callee TEXT,
    actions TEXT NOT NULL,
    diversion_reason TEXT,
    final_status BIGINT,
    invite_at BIGINT NOT NULL,
    answered_at BIGINT,
    ended_at BIGINT NOT NULL
);
CREATE INDEX call_records_subscriber ON call_records (subscriber, invite_at);
CREATE INDEX call_records_invite_at ON call_records (invite_at);
