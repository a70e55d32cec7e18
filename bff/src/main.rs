//! `bff serve` runs the REST edge; `bff token` mints development tokens.

use std::time::Duration;

use clap::Parser as _;
use secrecy::SecretString;
use uuid::Uuid;

use bff::auth::{Claims, Role, mint_hs256};
use bff::config::Config;
use service_runtime::config::parse_duration;

#[derive(Debug, clap::Parser)]
#[command(
    name = "bff",
    version = build_info::VERSION,
    about = "The REST/JSON edge of the affiliate platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Serve the REST API, its OpenAPI document (/openapi.json) and docs page (/docs).
    Serve(Box<Config>),
    /// Print a development token (HS256) for a user and role.
    Token(TokenArgs),
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The user's id (a UUID).
    #[arg(long)]
    sub: Uuid,
    #[arg(long, value_enum)]
    role: Role,
    /// How long the token is valid, e.g. 15m, 600s or 3600 (seconds).
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    ttl: Duration,
    #[arg(long, env = "JWT_ISSUER", default_value = "affiliate-platform")]
    issuer: String,
    #[arg(long, env = "JWT_AUDIENCE", default_value = "affiliate-bff")]
    audience: String,
    /// The same secret the BFF verifies with (at least 32 bytes).
    #[arg(long, env = "JWT_HS256_SECRET", hide_env_values = true)]
    secret: SecretString,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_runtime::tls::install_crypto_provider();
    match Cli::parse().command {
        Command::Token(args) => {
            let claims = Claims::new(args.sub, args.role, &args.issuer, &args.audience, args.ttl);
            let token = mint_hs256(&claims, &args.secret)?;
            #[allow(clippy::print_stdout)]
            {
                println!("{token}");
            }
            Ok(())
        }
        Command::Serve(config) => {
            service_runtime::telemetry::init(&config.log)?;
            let bff = match bff::Bff::build(*config).await {
                Ok(bff) => bff,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "bff failed to start");
                    return Err(e);
                }
            };
            tracing::info!(http = %bff.local_addr()?, "bff started");
            let result = bff
                .run_until_stopped(service_runtime::shutdown::on_signal())
                .await;
            if let Err(e) = &result {
                tracing::error!(error = format!("{e:#}"), "bff stopped with an error");
            }
            service_runtime::telemetry::shutdown();
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
