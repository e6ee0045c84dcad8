//! Config reload (SIGHUP): what a new `Config` may not change while running.
//!
//! The server builds the new config exactly as at start (file, then flags) and refuses a
//! reload that would move a listener (`check_immutable`); the core then applies it to the
//! live connections (`Broker::apply_reload`, `core/auth.rs`).

use crate::config::Config;

/// What a reload may not change while running.
pub fn check_immutable(old: &Config, new: &Config) -> Result<(), String> {
    if old.host != new.host || (old.port != new.port && !(old.port == -1 || new.port == -1)) {
        return Err("config reload not supported for the client listen address or port".into());
    }
    if old.cluster != new.cluster {
        return Err("config reload not supported for cluster settings".into());
    }
    if old.js != new.js {
        return Err("config reload not supported for JetStream settings".into());
    }
    if old.http_port != new.http_port || old.http_host != new.http_host {
        return Err("config reload not supported for the monitoring address or port".into());
    }
    Ok(())
}
