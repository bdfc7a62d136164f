-- credential holds the serialized webauthn-rs Passkey (public key and
-- counter included); sign_count mirrors its counter so that an assertion can
-- update it with a compare-and-set.
CREATE TABLE passkeys (
    id VARCHAR(36) PRIMARY KEY NOT NULL,
    user_id VARCHAR(36) NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id TEXT NOT NULL,
    credential TEXT NOT NULL,
    sign_count BIGINT NOT NULL,
    transports TEXT NOT NULL,
    nickname TEXT NOT NULL,
    backup_eligible BOOLEAN NOT NULL,
    backup_state BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    CONSTRAINT passkeys_credential_id_unique UNIQUE (credential_id)
);

CREATE INDEX passkeys_user_id_idx ON passkeys (user_id);
