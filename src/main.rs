use std::process::ExitCode;

use clap::Parser;
use passkey_auth::cli::{run_keys, Cli, Command};
use passkey_auth::config::Settings;
use passkey_auth::startup::Application;

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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

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
            match run_keys(&settings, command, &mut std::io::stdout()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("{err}");
                    ExitCode::FAILURE
                }
            }
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
