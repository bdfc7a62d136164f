-- Portable SQL: the same migration runs on SQLite and PostgreSQL.
-- Usernames are stored as given; username_key (ASCII-lowercased) makes them
-- unique case-insensitively on both backends.
CREATE TABLE users (
    id VARCHAR(36) PRIMARY KEY NOT NULL,
    username VARCHAR(64) NOT NULL,
    username_key VARCHAR(64) NOT NULL,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT users_username_key_unique UNIQUE (username_key)
);
