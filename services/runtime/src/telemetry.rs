//! Structured logging: JSON lines (or text for humans) through `tracing`, filtered by `RUST_LOG`.

use tracing_subscriber::EnvFilter;

use crate::config::LogArgs;

/// Installs the global subscriber. Call once, from `main`.
pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.filter)
        .map_err(|e| anyhow::anyhow!("invalid log filter `{}`: {e}", args.filter))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if args.format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| anyhow::anyhow!("install log subscriber: {e}"))
}
