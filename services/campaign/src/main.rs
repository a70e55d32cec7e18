//! campaign-service: config → logs → build → serve until SIGINT/SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_host::kit::main::<campaign_service::Campaign>(build_info::VERSION).await
}
