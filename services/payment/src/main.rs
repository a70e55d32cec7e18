//! payment-service: config → logs → build → serve until SIGINT/SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_host::kit::main::<payment_service::Payment>(build_info::VERSION).await
}
