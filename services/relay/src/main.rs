//! relay: config → logs → connect Pulsar → run every outbox loop until SIGINT/SIGTERM.

use relay::{Application, Config};
use service_runtime::{shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = service_runtime::app::parse(build_info::VERSION);
    service_runtime::tls::install_crypto_provider();
    telemetry::init(&config.log)?;
    let outboxes: Vec<&str> = config.outboxes.iter().map(|o| o.service.as_str()).collect();
    tracing::info!(?outboxes, pulsar = %config.pulsar.url, "relay starting");
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "relay failed to start");
            return Err(e);
        }
    };
    let result = app.run_until_stopped(shutdown::on_signal()).await;
    telemetry::shutdown();
    result
}
