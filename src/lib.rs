//! tern as a library: the modules the `tern` binary is built from. They are public so the
//! fuzz target can drive the parser and a connection's protocol handling without a loop.
//!
//! Map of the source, one line per folder (ARCHITECTURE.md walks them in the order data
//! flows: accept → read → parse → deliver → write → reap):
//! - `server`: the poll loop and its OS glue (listeners, signals, lame duck);
//! - `conn`: connections (socket, buffers, write loop, timers, producer stalls);
//! - `protocol`: the wire format (parser, the text tern writes, INFO, JSON);
//! - `core`: what a message server is (the broker, clients, delivery);
//! - `subject`: the subject index and permissions;
//! - `cluster`: routes to other servers;
//! - `monitor`: the HTTP monitoring endpoints;
//! - `config`: settings (file syntax, option names, flags, reload);
//! - `util`: small helpers (hash, time formats, logger, resolver, helper threads);
//! - `jetstream`: streams; `jetstream::store` keeps their messages (file and memory stores).

// The style card: no function over 80 lines (clippy.toml sets the threshold).
#![deny(clippy::too_many_lines)]

pub mod cluster;
pub mod config;
pub mod conn;
pub mod core;
pub mod jetstream;
pub mod monitor;
pub mod protocol;
pub mod server;
pub mod subject;
pub mod util;

#[cfg(test)]
mod layout_tests;
