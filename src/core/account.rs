//! Accounts: subject namespaces (messages never cross from one to another), each with its
//! subject index, and the local interest that routes are told about.
//!
//! Local interest: each account counts its local subscriptions per subject (and per queue
//! group); `RS+` goes to every registered route when a plain subject goes 0 -> 1, `RS-` on
//! 1 -> 0, and every change of a queue group's count sends `RS+` with the new weight (or
//! `RS-` at zero). A route that registers gets all of it at once (`cluster/interest.rs`).

use super::broker::Broker;
use crate::config::{GLOBAL_ACCOUNT, SYSTEM_ACCOUNT};
use crate::protocol::wire;
use crate::subject::sublist::Sublist;
use crate::util::hash::{new_map, FastMap};

pub struct Account {
    pub name: String,
    pub sublist: Sublist,
    /// Local interest as routes see it: `subject` or `subject queue` -> number of local
    /// subscriptions (kept only when clustering is on).
    pub interest: FastMap<Box<[u8]>, u32>,
}

impl Broker {
    /// Makes sure every configured account exists (`$G` first). Accounts are never removed
    /// while running, so indexes held by connections stay valid across a reload.
    pub fn sync_accounts(&mut self) {
        let builtin = [GLOBAL_ACCOUNT.to_string(), SYSTEM_ACCOUNT.to_string()];
        let names = builtin.into_iter().chain(self.cfg.accounts.iter().cloned());
        for name in names.collect::<Vec<_>>() {
            if !self.accounts.iter().any(|a| a.name == name) {
                self.accounts.push(Account {
                    name,
                    sublist: Sublist::new(),
                    interest: new_map(),
                });
            }
        }
    }

    /// The index of the account called `name` (`""` is `$G`).
    pub fn account_index(&self, name: &str) -> Option<usize> {
        if name.is_empty() {
            return Some(0);
        }
        self.accounts.iter().position(|a| a.name == name)
    }

    /// Every route learns a change of local interest (see the module comment).
    pub fn interest_changed(
        &mut self,
        acc: usize,
        subject: &[u8],
        queue: Option<&[u8]>,
        delta: i32,
    ) {
        if self.ident.cluster.is_none() {
            return;
        }
        let key: Box<[u8]> = match queue {
            Some(q) => [subject, b" ", q].concat().into(),
            None => subject.into(),
        };
        let a = &mut self.accounts[acc];
        let before = a.interest.get(&key).copied().unwrap_or(0);
        let after = before.saturating_add_signed(delta);
        if after == 0 {
            a.interest.remove(&key);
        } else {
            a.interest.insert(key, after);
        }
        if before == after || (queue.is_none() && before > 0 && after > 0) {
            return;
        }
        let mut line = Vec::new();
        wire::write_interest(&mut line, a.name.as_bytes(), subject, queue, after);
        for i in 0..self.conns.routes.len() {
            let r = self.conns.routes[i];
            if self.conns[r].is_registered_route() {
                self.conns.queue(r, &line);
            }
        }
    }
}
