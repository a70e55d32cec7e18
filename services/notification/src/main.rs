//! notification-service: config → logs → build → serve until SIGINT/SIGTERM.

use clap::Parser as _;

use notification_service::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let log = config.log.clone();
    service_runtime::app::main("notification-service", &log, Application::build(config)).await
}
