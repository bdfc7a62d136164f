ALTER TABLE passkeys DROP COLUMN discoverable;
