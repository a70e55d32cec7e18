//! trace-viewer: config → logs → bind both listeners → serve until SIGINT/SIGTERM.

use service_runtime::{shutdown, telemetry};
use trace_viewer::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = service_runtime::app::parse(build_info::VERSION);
    telemetry::init(&config.log)?;
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "trace viewer failed to start");
            return Err(e);
        }
    };
    let result = app.run_until_stopped(shutdown::on_signal()).await;
    if let Err(e) = &result {
        tracing::error!(
            error = format!("{e:#}"),
            "trace viewer stopped with an error"
        );
    }
    result
}
