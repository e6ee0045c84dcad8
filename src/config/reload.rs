//! Config reload (SIGHUP): a new `Config` replaces the running one without dropping clients.
//!
//! The server builds the new config exactly as at start (file, then flags) and refuses a
//! reload that would move a listener. `apply_reload` then swaps the config (limits, logging
//! flags, auth), creates new accounts, and checks every connected client again, as
//! nats-server does: one whose user is gone or moved to another account is closed (it will
//! reconnect), one whose credentials no longer pass gets `Authorization Violation` and is
//! closed, the others get their new permissions and lose the subscriptions those no longer
//! allow.

use crate::config::Config;
use crate::conn::{CloseReason, Credentials, Kind};
use crate::core::broker::Broker;
use crate::core::client::Login;
use log::info;

/// What a reload may not change while running.
pub fn check_immutable(old: &Config, new: &Config) -> Result<(), String> {
    if old.host != new.host || (old.port != new.port && !(old.port == -1 || new.port == -1)) {
        return Err("config reload not supported for the client listen address or port".into());
    }
    if old.cluster != new.cluster {
        return Err("config reload not supported for cluster settings".into());
    }
    if old.http_port != new.http_port || old.http_host != new.http_host {
        return Err("config reload not supported for the monitoring address or port".into());
    }
    Ok(())
}

impl Broker {
    pub fn apply_reload(&mut self, new: Config) {
        self.cfg = new;
        self.trace = self.cfg.trace;
        self.sync_accounts();
        let clients: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.kind == Kind::Client && c.connected)
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
                return self.close(t, CloseReason::ClientClosed);
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
