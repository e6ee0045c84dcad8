//! Interest across the cluster: what each side subscribes to, kept in sync with RS+/RS-.
//!
//! Local interest: each account counts its local subscriptions per subject (and per queue
//! group); `RS+` goes to every registered route when a plain subject goes 0 -> 1, `RS-` on
//! 1 -> 0, and every change of a queue group's count sends `RS+` with the new weight (or `RS-`
//! at zero). A route that registers gets all of it at once.
//!
//! Remote interest lives in the account's subject index as subscriptions owned by the route,
//! so one lookup finds local subscribers and routes alike; `deliver.rs` sends each route one
//! `RMSG`. It is taken only from registered routes (see `route_op`), and goes when the route
//! closes.

use crate::core::broker::Broker;
use crate::protocol::wire;
use crate::subject::sublist::Sub;
use log::debug;

impl Broker {
    pub(super) fn on_remote_sub(
        &mut self,
        t: usize,
        account: &[u8],
        subject: &[u8],
        queue: Option<&[u8]>,
        weight: i64,
    ) {
        let Some(acc) = self.account_index(&String::from_utf8_lossy(account)) else {
            debug!(
                "{} - Unknown account {:?} for remote subject {:?}",
                self.conns[t].label(),
                String::from_utf8_lossy(account),
                String::from_utf8_lossy(subject)
            );
            return;
        };
        let key = interest_key(account, subject, queue);
        self.conns[t].last_activity = self.now;
        let weight = weight.clamp(1, u32::MAX as i64) as u32;
        let r = self.conns[t].route.as_mut().expect("route");
        if let Some(&(a, id)) = r.subs.get(&key) {
            if let Some(sub) = self.accounts[a].sublist.get_mut(id) {
                sub.weight = weight;
            }
            return;
        }
        let mut sub = Sub::new(t, subject, queue, &key);
        sub.weight = weight;
        match self.accounts[acc].sublist.insert(sub) {
            Ok(id) => {
                r.subs.insert(key, (acc, id));
            }
            Err(_) => self.log_error(
                t,
                &format!(
                    "invalid remote subject {:?}",
                    String::from_utf8_lossy(subject)
                ),
            ),
        }
    }

    pub(super) fn on_remote_unsub(
        &mut self,
        t: usize,
        account: &[u8],
        subject: &[u8],
        queue: Option<&[u8]>,
    ) {
        let key = interest_key(account, subject, queue);
        self.conns[t].last_activity = self.now;
        let r = self.conns[t].route.as_mut().expect("route");
        if let Some((acc, id)) = r.subs.remove(&key) {
            self.accounts[acc].sublist.remove(id);
        }
    }

    /// Every route learns a change of local interest (see the module comment).
    pub fn interest_changed(
        &mut self,
        acc: usize,
        subject: &[u8],
        queue: Option<&[u8]>,
        delta: i32,
    ) {
        if self.cluster.is_none() {
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
        write_interest(&mut line, a.name.as_bytes(), subject, queue, after);
        let routes: Vec<usize> = self
            .cluster
            .as_ref()
            .map(|cl| cl.routes.values().copied().collect())
            .unwrap_or_default();
        for r in routes {
            self.queue(r, &line);
        }
    }

    /// A new route gets all our interest at once.
    pub(super) fn send_all_interest(&mut self, t: usize) {
        let mut buf = Vec::new();
        for a in &self.accounts {
            for (key, &n) in &a.interest {
                let (subject, queue) = match key.iter().position(|&b| b == b' ') {
                    Some(i) => (&key[..i], Some(&key[i + 1..])),
                    None => (&key[..], None),
                };
                write_interest(&mut buf, a.name.as_bytes(), subject, queue, n);
            }
        }
        if !buf.is_empty() {
            self.queue(t, &buf);
        }
        debug!(
            "{} - Sent local subscriptions to route",
            self.conns[t].label()
        );
    }
}

/// The key remote interest is stored under: `account subject[ queue]` (as nats-server).
fn interest_key(account: &[u8], subject: &[u8], queue: Option<&[u8]>) -> Box<[u8]> {
    let mut k = Vec::with_capacity(account.len() + subject.len() + 16);
    k.extend_from_slice(account);
    k.push(b' ');
    k.extend_from_slice(subject);
    if let Some(q) = queue {
        k.push(b' ');
        k.extend_from_slice(q);
    }
    k.into()
}

/// `RS+ acc subject[ queue weight]` or, at zero, `RS- acc subject[ queue]`.
fn write_interest(out: &mut Vec<u8>, account: &[u8], subject: &[u8], queue: Option<&[u8]>, n: u32) {
    out.extend_from_slice(if n > 0 { b"RS+ " } else { b"RS- " });
    out.extend_from_slice(account);
    out.push(b' ');
    out.extend_from_slice(subject);
    if let Some(q) = queue {
        out.push(b' ');
        out.extend_from_slice(q);
        if n > 0 {
            out.push(b' ');
            wire::write_uint(out, n as u64);
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_lines() {
        let mut out = Vec::new();
        write_interest(&mut out, b"$G", b"foo", None, 1);
        write_interest(&mut out, b"$G", b"foo", None, 0);
        write_interest(&mut out, b"$G", b"bar", Some(b"q"), 3);
        write_interest(&mut out, b"$G", b"bar", Some(b"q"), 0);
        assert_eq!(
            out,
            b"RS+ $G foo\r\nRS- $G foo\r\nRS+ $G bar q 3\r\nRS- $G bar q\r\n"
        );
        assert_eq!(&*interest_key(b"$G", b"bar", Some(b"q")), b"$G bar q");
    }
}
