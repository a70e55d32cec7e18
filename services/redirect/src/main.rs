//! redirect: config → logs → load the links → serve until SIGINT/SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: redirect::Config = service_runtime::app::parse(build_info::VERSION);
    service_runtime::tls::install_crypto_provider();
    service_runtime::telemetry::init(&config.log)?;
    let edge = match redirect::Edge::build(config).await {
        Ok(edge) => edge,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "redirect failed to start");
            return Err(e);
        }
    };
    tracing::info!(http = %edge.local_addr(), "redirect started");
    let result = edge
        .run_until_stopped(service_runtime::shutdown::on_signal())
        .await;
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "redirect stopped with an error");
    }
    service_runtime::telemetry::shutdown();
    result
}
