//! payment-service: config → logs → build → serve until SIGINT/SIGTERM.

use clap::Parser as _;

use payment_service::{Application, Config};
use service_runtime::{shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(&config.log)?;
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "payment-service failed to start");
            return Err(e);
        }
    };
    tracing::info!(grpc = %app.grpc_addr(), "payment-service started");
    let result = app.run_until_stopped(shutdown::on_signal()).await;
    if let Err(e) = &result {
        tracing::error!(
            error = format!("{e:#}"),
            "payment-service stopped with an error"
        );
    }
    result
}
