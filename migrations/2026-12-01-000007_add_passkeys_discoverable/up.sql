-- Whether the authenticator reported the credential discoverable (the
-- credProps extension's rk): true, false, or NULL when it did not say.
-- Passkeys registered before this column came are NULL.
ALTER TABLE passkeys ADD COLUMN discoverable BOOLEAN;
