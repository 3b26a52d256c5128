//! Tracing set-up: human-readable lines on stderr, `RUST_LOG` to filter.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;

/// Libraries that log query plans or statements with their literal values at debug
/// level — which would put subjects' ID numbers in the log. They are capped at `info`
/// whatever `RUST_LOG` says.
const CAPPED: [&str; 1] = ["datafusion"];

/// The filter in force: `RUST_LOG` or `default`, with [`CAPPED`] libraries at `info`.
pub fn filter(default: &str) -> EnvFilter {
    capped(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)))
}

/// `filter` with the [`CAPPED`] libraries at `info`.
pub fn capped(mut filter: EnvFilter) -> EnvFilter {
    for target in CAPPED {
        if let Ok(d) = format!("{target}=info").parse::<Directive>() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

pub fn init(default: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(default))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
