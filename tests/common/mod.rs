pub mod authenticator;
pub mod server_process;
