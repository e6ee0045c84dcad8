//! JetStream: streams stored by tern's own message store, and the `$JS.API` that manages
//! them. Streams and the API are plain data and functions driven by the poll loop:
//! - `store/`: one stream's messages (file and memory stores), fsync thread;
//! - `api/`: `$JS.API` requests to replies (no sockets); `account`: an account's streams,
//!   limits and counters; `stream` + `publish`: a stream and the PubAck path;
//! - `consumer/`: consumers (delivery, acks, pull requests, their state on disk) and the
//!   surface the loop drives them through (consumer/mod.rs);
//! - `config` + `check`: StreamConfig JSON and nats-server's rules; `meta`: meta.inf and
//!   reopening streams at startup; `headers`, `dedupe`, `subject`, `transform`, `gojson`:
//!   helpers; `report`: what monitoring shows (read by monitor/jsz.rs).

pub mod account;
pub mod api;
pub mod check;
mod commit;
pub mod config;
pub mod consumer;
pub mod consumers;
pub mod dedupe;
pub mod gojson;
pub mod headers;
mod inbound;
pub mod meta;
pub mod publish;
pub mod report;
pub mod source;
pub mod store;
pub mod stream;
pub mod subject;
#[cfg(test)]
mod tests;
pub mod transform;
