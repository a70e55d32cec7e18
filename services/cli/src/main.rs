//! `platform`: the operator's command line.
//!
//! `platform tail --topic campaign-events` prints a topic's messages as JSON lines;
//! `platform dlq topics | list | show | redrive` inspects and replays dead letters;
//! `platform load --rate 200 --duration 60s` puts a running platform under purchase load;
//! `platform schemas` registers the envelopes' schemas in the namespace;
//! `platform replay analytics` rebuilds the analytics service's statistics from the topics;
//! `platform verify ledger` checks the commission service's books (exit status 0, 1 or 2).

mod dlq;
mod load;
mod registry;
mod replay;
mod tail;
mod verify;

use std::process::ExitCode;

use clap::Parser as _;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Parser)]
#[command(name = "platform", version = build_info::VERSION, about = "Operate the affiliate platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print messages of a topic as JSON lines (key, properties, decoded envelope).
    Tail(tail::TailArgs),
    /// Inspect and redrive dead letters.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Drive purchases into a running platform at a fixed rate or a ramp and report throughput,
    /// latencies (acknowledgement and purchase → commission), missing and duplicate commissions.
    Load(Box<load::LoadArgs>),
    /// Register every topic's envelope (PROTOBUF_NATIVE) in the namespace's schema registry,
    /// before anything uses the topics.
    Schemas(registry::SchemasArgs),
    /// Rebuild a read model from the topics' earliest retained messages.
    #[command(subcommand)]
    Replay(replay::ReplayCommand),
    /// Check the platform's books: exits 0 when they balance, 1 when they do not, 2 when they
    /// could not be checked.
    #[command(subcommand)]
    Verify(verify::VerifyCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    service_runtime::tls::install_crypto_provider();
    let done = match Cli::parse().command {
        // The one command whose exit status is its answer.
        Command::Verify(command) => return Ok(verify::run(command).await),
        Command::Tail(args) => tail::run(args).await,
        Command::Dlq(command) => dlq::run(command).await,
        Command::Load(args) => load::run(*args, interrupt()).await,
        Command::Schemas(args) => registry::register(args).await,
        Command::Replay(command) => replay::run(command).await,
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// Cancelled on the first Ctrl-C (the load stops sending and still reports); a second one exits.
fn interrupt() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: stopping (Ctrl-C again to quit at once)");
            cancel.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    token
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
