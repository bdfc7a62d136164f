pub mod authenticator;
pub mod pg_database;
pub mod server_process;
