//! Authentication: who a client's CONNECT credentials make it (users, token,
//! no_auth_user), binding a connection to its user's account and permissions, and checking
//! every client again when a reload changes the users.
//!
//! Reload, as nats-server does it: a client whose user is gone or moved to another account
//! is closed (it will reconnect), one whose credentials no longer pass gets `Authorization
//! Violation` and is closed, the others get their new permissions and lose the
//! subscriptions those no longer allow.

use super::broker::Broker;
use crate::config::Config;
use crate::conn::{CloseReason, Credentials};
use crate::protocol::wire;
use crate::subject::perms::ConnPerms;
use crate::subject::sublist::SubId;
use log::info;

/// What credentials amount to.
pub enum Login {
    /// No authentication configured, or the token matched.
    Open,
    /// Configured user number `i`.
    User(usize),
    Refused,
}

impl Broker {
    pub fn auth_violation(&mut self, t: usize) {
        self.conns.log_error(t, "authentication error");
        self.conns
            .send_err(t, wire::ERR_AUTH_VIOLATION, CloseReason::AuthViolation);
    }

    /// With authentication on, a client's frame before CONNECT is a violation (nats-server
    /// decides on its first byte `first`), unless no_auth_user makes the client that user.
    /// False: the connection was refused.
    pub(super) fn may_act_before_connect(&mut self, t: usize, first: u8) -> bool {
        if self.conns[t].connected || !self.cfg.auth.required() || matches!(first, b'C' | b'c') {
            return true;
        }
        let no_auth = self.cfg.auth.no_auth_user.as_ref();
        let user = no_auth.and_then(|n| self.cfg.auth.users.iter().position(|u| &u.name == n));
        if user.is_none() || !self.bind_user(t, user) {
            self.auth_violation(t);
            return false;
        }
        let c = &mut self.conns[t];
        c.connected = true;
        c.auth_deadline = None;
        true
    }

    /// Who CONNECT's credentials identify (the no_auth_user when none were given).
    pub fn authenticate(&self, creds: &Credentials) -> Login {
        let auth = &self.cfg.auth;
        if !auth.required() {
            return Login::Open;
        }
        if let Some(token) = &auth.token {
            return if creds.token == *token {
                Login::Open
            } else {
                Login::Refused
            };
        }
        let anonymous = creds.user.is_empty() && creds.pass.is_empty() && creds.token.is_empty();
        let wanted = match (&auth.no_auth_user, anonymous) {
            (Some(name), true) => auth.users.iter().position(|u| &u.name == name),
            _ => auth
                .users
                .iter()
                .position(|u| u.name == creds.user && u.password == creds.pass),
        };
        wanted.map_or(Login::Refused, Login::User)
    }

    /// Gives connection `t` the account and permissions of configured user `user` (or the
    /// global account and no restrictions). False if the user's account does not exist.
    pub fn bind_user(&mut self, t: usize, user: Option<usize>) -> bool {
        let (account, perms, name) = match user.and_then(|i| self.cfg.auth.users.get(i)) {
            None => (Some(0), None, String::new()),
            Some(u) => (
                self.account_index(&u.account),
                u.permissions.as_ref().map(|p| Box::new(ConnPerms::new(p))),
                u.name.clone(),
            ),
        };
        let Some(account) = account else { return false };
        self.move_to_account(t, account);
        let c = &mut self.conns[t];
        c.perms = perms;
        c.opts.user = name;
        true
    }

    /// Moves a connection (and any subscriptions it already has) into another account.
    fn move_to_account(&mut self, t: usize, account: usize) {
        let from = self.conns[t].account;
        if from == account {
            return;
        }
        let ids: Vec<(Box<[u8]>, SubId)> = self.conns[t].subs.drain().collect();
        for (sid, id) in ids {
            if let Some(sub) = self.accounts[from].sublist.remove(id) {
                let (subject, queue) = (sub.subject.clone(), sub.queue.clone());
                self.interest_changed(from, &subject, queue.as_deref(), -1);
                if let Ok(new_id) = self.accounts[account].sublist.insert(sub) {
                    self.conns[t].subs.insert(sid, new_id);
                    self.interest_changed(account, &subject, queue.as_deref(), 1);
                }
            }
        }
        self.conns[t].account = account;
    }

    /// Applies a reloaded config: swaps it in (limits, auth), creates new accounts, and
    /// checks every connected client again (see the module comment).
    pub fn apply_reload(&mut self, new: Config) {
        self.set_config(new);
        let clients: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_client() && c.connected)
            .map(|(t, _)| t)
            .collect();
        for t in clients {
            self.reauthorize(t);
        }
    }

    fn reauthorize(&mut self, t: usize) {
        let creds: Credentials = self.conns[t].creds.as_deref().cloned().unwrap_or_default();
        // Like nats-server: a user that is gone, or now belongs to another account, is simply
        // disconnected (its client reconnects and authenticates afresh).
        if !creds.user.is_empty() && self.cfg.auth.token.is_none() {
            let account = self
                .cfg
                .auth
                .users
                .iter()
                .find(|u| u.name == creds.user)
                .map(|u| self.account_index(&u.account));
            if account.is_none_or(|a| a != Some(self.conns[t].account)) {
                return self.conns.close(t, CloseReason::ClientClosed);
            }
        }
        let user = match self.authenticate(&creds) {
            Login::Open => None,
            Login::User(i) => Some(i),
            Login::Refused => return self.auth_violation(t),
        };
        if !self.bind_user(t, user) {
            return self.auth_violation(t);
        }
        let c = &self.conns[t];
        let Some(perms) = &c.perms else { return };
        let sublist = &self.accounts[c.account].sublist;
        let denied: Vec<_> = c
            .subs
            .values()
            .filter_map(|&id| sublist.get(id).map(|s| (id, s)))
            .filter(|(_, s)| !perms.can_subscribe(&s.subject, s.queue.as_deref()))
            .map(|(id, s)| (id, String::from_utf8_lossy(&s.subject).into_owned()))
            .collect();
        for (id, subject) in denied {
            info!(
                "{} - Removed sub {:?} for user {:?} - not authorized",
                self.conns[t].label(),
                subject,
                self.conns[t].opts.user
            );
            self.remove_sub(t, id);
        }
    }
}
