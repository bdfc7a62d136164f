-- An operator's lock (`passkey-auth user lock NAME`): while locked_at is
-- set the account cannot log in, refresh or sign in with a passkey, and the
-- lock ended its sessions. NULL: not locked (every account before this
-- column came).
ALTER TABLE users ADD COLUMN locked_at TIMESTAMP;
