//! tracking-service: config → logs → build → serve until SIGINT/SIGTERM.

use clap::Parser as _;

use tracking_service::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let log = config.log.clone();
    service_runtime::app::main("tracking-service", &log, Application::build(config)).await
}
