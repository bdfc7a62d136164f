-- The audit trail. Ids are UUIDv7 strings, so ordering by id is ordering
-- by time; user_id is null when the event names no known user (e.g. a
-- failed login for an unknown username). Nothing secret is ever stored here.
CREATE TABLE auth_events (
    id VARCHAR(36) PRIMARY KEY NOT NULL,
    user_id VARCHAR(36) REFERENCES users (id) ON DELETE CASCADE,
    kind VARCHAR(64) NOT NULL,
    outcome VARCHAR(16) NOT NULL,
    client_ip VARCHAR(45) NOT NULL,
    user_agent TEXT,
    detail TEXT,
    created_at TIMESTAMP NOT NULL
);

CREATE INDEX auth_events_user_id_idx ON auth_events (user_id, id);
