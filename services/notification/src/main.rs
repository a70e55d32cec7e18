//! notification-service: config → logs → build → serve until SIGINT/SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_host::kit::main::<notification_service::Notification>(build_info::VERSION).await
}
