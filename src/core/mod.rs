//! The core: what a message server is. The broker (connections and accounts), what client
//! frames do, and the fan-out of a message to its subscribers.

pub mod account;
pub mod auth;
pub mod broker;
pub mod client;
pub mod deliver;
pub mod input;
pub mod internal;
#[cfg(test)]
pub(crate) mod testing;
