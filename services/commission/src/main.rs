//! commission-service: config → logs → build → serve until SIGINT/SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_host::kit::main::<commission_service::Commission>(build_info::VERSION).await
}
