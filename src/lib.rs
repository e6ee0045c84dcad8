//! tern as a library: the modules the `tern` binary is built from. They are public so the
//! fuzz target can drive the parser and a connection's protocol handling without a loop.
//!
//! Map of the source (see ARCHITECTURE.md):
//! - `server`: the poll loop (accept, read, end-of-pass flush); `broker`: its shared state
//!   (connections, counters, dirty list, timers, stalls); `conn`: one connection's buffers;
//! - `parser`: the I/O-free protocol parser; `client`: what client frames do; `deliver`: the
//!   fan-out of a message to subscribers and routes; `sublist`: the subject index;
//! - `route`: clustering (route connections, gossip, interest propagation);
//! - `proto`, `info`, `json`: wire text; `config`, `options`, `conf`, `config_file`:
//!   settings; `logger`, `signals`, `hash`: support;
//! - `jetstream`: streams; `jetstream::store` keeps their messages (file and memory stores).

pub mod broker;
pub mod client;
pub mod conf;
pub mod config;
pub mod config_file;
pub mod conn;
pub mod deliver;
pub mod hash;
pub mod http;
pub mod info;
pub mod jetstream;
pub mod json;
pub mod logger;
pub mod monitor;
pub mod options;
pub mod parser;
pub mod perms;
pub mod proto;
pub mod reload;
pub mod resolve;
pub mod route;
pub mod server;
pub mod signals;
pub mod sublist;
pub mod timefmt;
