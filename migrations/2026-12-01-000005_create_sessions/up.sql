-- Sessions: one per password login (or passkey sign-in). amr and
-- auth_time are the login's, which refreshed access tokens carry again.
-- A session ends (ended_at, end_reason) by logout, revocation, password
-- change, recovery, refresh-token reuse or expiry; its rows stay a while
-- so that every node learns of the ending, then a background task
-- deletes them.
CREATE TABLE sessions (
    id VARCHAR(36) PRIMARY KEY NOT NULL,
    user_id VARCHAR(36) NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    amr TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    client_ip VARCHAR(45) NOT NULL,
    user_agent TEXT,
    created_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    refresh_expires_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    generation BIGINT NOT NULL,
    ended_at TIMESTAMP,
    end_reason VARCHAR(32)
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id, created_at);
CREATE INDEX sessions_ended_at_idx ON sessions (ended_at);

-- Every refresh token a session was given, as a SHA-256 hash (the tokens
-- carry 256 random bits, so a fast hash cannot be reversed by guessing).
-- rotated_at is set, with a compare-and-set, when the token is swapped for
-- the next one; presenting a rotated token again is recognised as reuse.
CREATE TABLE refresh_tokens (
    token_hash VARCHAR(64) PRIMARY KEY NOT NULL,
    session_id VARCHAR(36) NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    generation BIGINT NOT NULL,
    issued_at TIMESTAMP NOT NULL,
    rotated_at TIMESTAMP
);

CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);
