//! `platform`: the operator's command line.
//!
//! `platform tail --topic campaign-events` prints a topic's messages as JSON lines;
//! `platform dlq topics | list | show | redrive` inspects and replays dead letters.

mod decode;
mod dlq;
mod tail;

use clap::Parser as _;

#[derive(Debug, clap::Parser)]
#[command(name = "platform", version, about = "Operate the affiliate platform")]
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Tail(args) => tail::run(args).await,
        Command::Dlq(command) => dlq::run(command).await,
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
