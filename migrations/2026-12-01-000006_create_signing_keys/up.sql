-- The keys access tokens are signed with. generation orders them and is
-- unique, so nodes that start together on an empty table, or two rotations
-- at once, cannot both add "the next" key: the loser's insert fails and it
-- reads the winner's. A key signs from activates_at until the next key's
-- activates_at (its retired_at); its public half stays published until the
-- longest token lifetime after that. private_key is "plain:<base64 PKCS#8>"
-- or, with SIGNING_KEY_ENCRYPTION_KEY, "xchacha20poly1305:<nonce>:<sealed>".
CREATE TABLE signing_keys (
    kid VARCHAR(64) PRIMARY KEY NOT NULL,
    generation BIGINT NOT NULL UNIQUE,
    algorithm VARCHAR(16) NOT NULL,
    public_jwk TEXT NOT NULL,
    private_key TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    activates_at TIMESTAMP NOT NULL,
    retired_at TIMESTAMP
);
