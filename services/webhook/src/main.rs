//! webhook-service: config → logs → build → serve until SIGINT/SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_host::kit::main::<webhook_service::Webhook>(build_info::VERSION).await
}
