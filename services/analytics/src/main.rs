//! analytics-service: config → logs → build → serve until SIGINT/SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_host::kit::main::<analytics_service::Analytics>(build_info::VERSION).await
}
