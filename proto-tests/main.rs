// Raw-TCP protocol test suite for tern, a NATS-compatible server that must be a byte-compatible
// drop-in for nats-server 2.9.10. Tests speak the client protocol over plain TCP sockets; the
// differential ones run the same script against tern (TERN_BIN or the crate binary) and the
// reference nats-server (NATS_SERVER or /usr/sbin/nats-server; skipped if absent, a failure
// if TERN_REQUIRE_REFERENCE is set, as in CI) and compare normalised transcripts; every test
// also carries explicit expectations, and tern must give the same transcript again with each
// write split in two at every byte (harness.rs, `Pair::check`).

mod harness;
mod sockdiag;

mod accept_backoff;
mod accounts;
mod auth;
mod cli;
mod cluster;
mod connect;
mod delivery_order;
mod errors;
mod framing;
mod headers;
mod jsmonitor;
mod lifecycle;
mod limits;
mod monitor;
mod monitor_abuse;
mod parsing;
mod permissions;
mod pings;
mod pubsub;
mod runs;
mod slow_consumer;
