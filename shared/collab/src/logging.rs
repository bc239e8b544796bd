//! The functions' log subscriber: JSON lines when Lambda's advanced logging controls ask for them
//! (`AWS_LAMBDA_LOG_FORMAT=JSON`, which the template sets), text otherwise; the level from
//! `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG` (directives such as `info,collab=debug`), else INFO.
//!
//! It does what `lambda_runtime::tracing::init_default_subscriber` does without `EnvFilter`,
//! whose regex engine alone was about 0.7 MB of every bootstrap: directives are parsed as
//! [`Targets`], which covers what an operator sets (a level, per-target levels).

use std::str::FromStr;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter for a directive string; an unreadable one falls back to INFO (a typo in the log
/// level must not stop the function).
pub fn filter(directives: Option<&str>) -> Targets {
    directives
        .and_then(|d| Targets::from_str(d.trim()).ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

/// Installs the subscriber (once; a second call does nothing).
pub fn init() {
    let directives = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry().with(filter(directives.as_deref()));
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time();
    let _ = if json {
        registry.with(fmt.json()).try_init()
    } else {
        registry.with(fmt).try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn a_level_per_target_and_a_default() {
        let f = filter(Some("warn,collab=debug"));
        assert!(f.would_enable("collab::service", &Level::DEBUG));
        assert!(!f.would_enable("hyper", &Level::INFO));
        assert!(f.would_enable("hyper", &Level::WARN));
    }

    #[test]
    fn lambdas_upper_case_levels_and_nonsense() {
        assert!(filter(Some("DEBUG")).would_enable("x", &Level::DEBUG));
        let fallback = filter(Some("=== not a level"));
        assert!(fallback.would_enable("x", &Level::INFO));
        assert!(!fallback.would_enable("x", &Level::DEBUG));
        assert!(!filter(None).would_enable("x", &Level::DEBUG));
    }
}
