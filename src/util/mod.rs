//! Small helpers with no knowledge of the server: the map hasher, time formats, the logger,
//! the resolver, and helper threads.

pub mod hash;
pub mod logger;
pub mod resolve;
pub mod rng;
pub mod timefmt;
pub mod worker;
