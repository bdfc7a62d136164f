pub mod authenticator;
