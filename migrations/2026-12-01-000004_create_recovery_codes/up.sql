-- Recovery codes: Argon2id PHC strings only, never the codes. The codes of
-- one set share a salt, so a code is checked with one hash and spent by
-- deleting the row that holds exactly that hash.
CREATE TABLE recovery_codes (
    id VARCHAR(36) PRIMARY KEY NOT NULL,
    user_id VARCHAR(36) NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE INDEX recovery_codes_user_id_idx ON recovery_codes (user_id, code_hash);
