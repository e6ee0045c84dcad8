//! The broker: the state a message's delivery needs in one borrow, the connections and the
//! accounts, plus what every handler reads (config, identity, counters).
//!
//! Handlers (client.rs, the cluster's route handlers) mark a connection closing; `reap`
//! frees it at the end of the pass, never in the middle of a fan-out: the connection table
//! lets go of the socket, and the core removes its subscriptions and remembers it.

use super::account::Account;
use super::deliver::Scratch;
use super::internal::InternalMsg;
use crate::config::Config;
use crate::conn::close::snapshot;
use crate::conn::table::Limits;
use crate::conn::{CloseReason, Conn, Table};
use crate::protocol::info::{self, ClientInfo, Identity};
use crate::subject::sublist::SubId;
use crate::util::rng::Rng;
use log::{debug, info};
use mio::Registry;
use std::net::SocketAddr;
use std::time::SystemTime;

/// Server-wide counters, read by monitoring (slow consumers are counted by the table).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub total_connections: u64,
}

pub struct Broker {
    /// Every connection, and writing to them (`conn/`).
    pub conns: Table,
    /// `$G`, `$SYS`, then the configured accounts; indexes never change while running.
    pub accounts: Vec<Account>,
    /// The running config: handlers check limits and credentials against it. A reload swaps
    /// it whole (`set_config`).
    pub cfg: Config,
    /// Who we are, as INFO says it: the connect and PING handlers send INFO.
    pub ident: Identity,
    /// Counted on the message path, where `conns` is already borrowed.
    pub stats: Stats,
    /// Delivery's reusable buffers (deliver.rs).
    pub(crate) scratch: Scratch,
    /// Messages delivered to sources' internal subscriptions, waiting for them to take
    /// (internal.rs): the fan-out writes here, so it sits beside the connections.
    pub(crate) inbox: Vec<InternalMsg>,
    /// Subject prefixes a source says are published to once each (JetStream's acks carry
    /// sequence numbers): their lookups do not fill the subject cache (`lookup_once`).
    pub one_off: Vec<Box<[u8]>>,
    /// Queue picks and PING jitter.
    pub rng: Rng,
}

impl Broker {
    pub fn new(cfg: Config, ident: Identity, registry: Registry) -> Broker {
        let mut b = Broker {
            conns: Table::new(registry, Limits::of(&cfg)),
            accounts: Vec::new(),
            cfg,
            ident,
            stats: Stats::default(),
            scratch: Scratch::default(),
            inbox: Vec::new(),
            one_off: Vec::new(),
            rng: Rng::seeded(),
        };
        b.sync_accounts();
        b
    }

    /// Swaps in a new config: the connections' limits follow, new accounts are created.
    pub fn set_config(&mut self, cfg: Config) {
        self.conns.limits = Limits::of(&cfg);
        self.cfg = cfg;
        self.sync_accounts();
    }

    /// The INFO line for client `cid` at `addr`.
    pub fn client_info(&self, cid: u64, addr: SocketAddr) -> String {
        let no_advertise = self.cfg.cluster.as_ref().is_some_and(|c| c.no_advertise);
        let urls = (self.ident.cluster.is_some() && !no_advertise).then(|| self.connect_urls());
        let c = ClientInfo {
            cid,
            addr,
            auth_required: self.cfg.auth.advertised(),
            max_payload: self.cfg.max_payload,
            jetstream: self.cfg.js.enabled,
            connect_urls: urls.as_deref(),
        };
        info::client_info(&self.ident, &c)
    }

    /// Every client URL of the cluster (ours first), for INFO's `connect_urls`.
    pub fn connect_urls(&self) -> Vec<String> {
        let mut urls = self.ident.client_urls.clone();
        for (_, c) in self.conns.iter() {
            if let Some(r) = c.route().filter(|r| r.registered) {
                for u in &r.connect_urls {
                    if !urls.contains(u) {
                        urls.push(u.clone());
                    }
                }
            }
        }
        urls
    }

    /// Subscriptions across all accounts.
    pub fn sub_count(&self) -> usize {
        self.accounts.iter().map(|a| a.sublist.count()).sum()
    }

    /// Removes one of `t`'s subscriptions from the index and from the connection.
    pub fn remove_sub(&mut self, t: usize, id: SubId) {
        let Some(c) = self.conns.get_mut(t) else {
            return;
        };
        let acc = c.account;
        if let Some(sub) = self.accounts[acc].sublist.remove(id) {
            c.subs.remove(&sub.sid);
            self.interest_changed(acc, &sub.subject, sub.queue.as_deref(), -1);
        }
    }

    /// Frees every connection marked closing this pass. Connections a loop source owns
    /// (`Conn::owner`: routes) are handed back for it to clean up after.
    pub fn reap(&mut self) -> Vec<Conn> {
        let mut owned = Vec::new();
        while let Some(t) = self.conns.next_closing() {
            owned.extend(self.free(t));
        }
        owned
    }

    fn free(&mut self, t: usize) -> Option<Conn> {
        let mut c = self.conns.take(t)?;
        let reason = c.closing.unwrap_or(CloseReason::ServerShutdown);
        if c.is_client() {
            let acc = &self.accounts[c.account];
            let mut info = snapshot(&c, &acc.name, &acc.sublist, true);
            info.stop = Some(SystemTime::now());
            info.reason = Some(reason.as_str());
            self.conns.closed.push(info);
        }
        for (_, id) in c.subs.drain() {
            if let Some(sub) = self.accounts[c.account].sublist.remove(id) {
                self.interest_changed(c.account, &sub.subject, sub.queue.as_deref(), -1);
            }
        }
        if c.is_client() {
            debug!(
                "{} - Client connection closed: {}",
                c.label(),
                reason.as_str()
            );
        } else {
            info!(
                "{} - Router connection closed: {}",
                c.label(),
                reason.as_str()
            );
        }
        c.owner.is_some().then_some(c)
    }

    /// Closes every connection (shutdown), flushing what can be flushed without waiting.
    pub fn close_all(&mut self) -> Vec<Conn> {
        self.conns.close_all();
        self.reap()
    }
}
