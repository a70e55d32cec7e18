//! tracking-service: config → logs → build → serve until SIGINT/SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_host::kit::main::<tracking_service::Tracking>(build_info::VERSION).await
}
