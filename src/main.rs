use std::process::ExitCode;

use clap::Parser;
use passkey_auth::cli::{
    exit_code, run_check_config, run_keys, run_migrate, run_user, Cli, Command,
};
use passkey_auth::config::Settings;
use passkey_auth::startup::Application;

/// mimalloc instead of the system's malloc (see Cargo.toml): the server's
/// allocations are many, small and short-lived, freed across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    // Parsed first, so that `--help` needs no configuration.
    let cli = Cli::parse();
    // A missing .env is normal; a malformed one is a configuration error.
    if let Err(err) = dotenvy::dotenv() {
        if !err.not_found() {
            eprintln!("invalid configuration: .env: {err}");
            return ExitCode::from(2);
        }
    }
    // The logger comes before the settings (their errors go to stderr as
    // they are), so LOG_FORMAT is read here first; Settings checks it again.
    match passkey_auth::config::LogFormat::from_env() {
        Ok(format) => passkey_auth::middleware::logging::init(format),
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    }

    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        None | Some(Command::Serve) => serve(settings).await,
        Some(Command::Keys { command }) => {
            exit_code(run_keys(&settings, command, &mut std::io::stdout()).await)
        }
        Some(Command::Migrate) => exit_code(run_migrate(&settings, &mut std::io::stdout()).await),
        Some(Command::CheckConfig) => {
            let is_set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
            exit_code(run_check_config(&settings, &is_set, &mut std::io::stdout()))
        }
        Some(Command::User { command }) => {
            exit_code(run_user(&settings, command, &mut std::io::stdout()).await)
        }
    }
}

async fn serve(settings: Settings) -> ExitCode {
    let origin = settings.rp_origin.clone();
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(err) => {
            eprintln!("cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    log::info!(
        "listening on http://{} (demo page for origin {origin}; token keys at /.well-known/jwks.json)",
        app.address()
    );
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("server error: {err}");
            ExitCode::FAILURE
        }
    }
}
