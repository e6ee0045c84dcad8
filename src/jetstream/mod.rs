//! JetStream: streams of stored messages. So far only the store (`store/`): it keeps one
//! stream's messages in segment files or in memory and knows nothing of JSON, accounts or
//! sockets. The stream layer (API, publishing, limits from the config) is built on it.

pub mod store;
