//! Interest across the cluster: what each side subscribes to, kept in sync with RS+/RS-.
//!
//! Local interest is counted per account by the core (`core/account.rs`), which sends each
//! change to the registered routes; a route that registers gets all of it at once here.
//!
//! Remote interest lives in the account's subject index as subscriptions owned by the route,
//! so one lookup finds local subscribers and routes alike; `core/deliver.rs` sends each route
//! one `RMSG`. It is taken only from registered routes (see `route_op`), and goes when the
//! route closes.

use crate::core::broker::Broker;
use crate::protocol::wire;
use crate::subject::sublist::Sub;
use log::debug;

/// A route's `RS+`: remote interest, as a subscription owned by the route (a queue group's
/// weight is the remote's member count).
pub(super) fn on_remote_sub(
    b: &mut Broker,
    t: usize,
    account: &[u8],
    subject: &[u8],
    queue: Option<&[u8]>,
    weight: i64,
) {
    let Some(acc) = b.account_index(&String::from_utf8_lossy(account)) else {
        debug!(
            "{} - Unknown account {:?} for remote subject {:?}",
            b.conns[t].label(),
            String::from_utf8_lossy(account),
            String::from_utf8_lossy(subject)
        );
        return;
    };
    let key = interest_key(account, subject, queue);
    let now = b.conns.now;
    b.conns[t].last_activity = now;
    let weight = weight.clamp(1, u32::MAX as i64) as u32;
    let Some(r) = b.conns[t].route_mut() else {
        return;
    };
    if let Some(&(a, id)) = r.subs.get(&key) {
        if let Some(sub) = b.accounts[a].sublist.get_mut(id) {
            sub.weight = weight;
        }
        return;
    }
    let mut sub = Sub::new(t, subject, queue, &key);
    sub.weight = weight;
    match b.accounts[acc].sublist.insert(sub) {
        Ok(id) => {
            r.subs.insert(key, (acc, id));
        }
        Err(_) => b.conns.log_error(
            t,
            &format!(
                "invalid remote subject {:?}",
                String::from_utf8_lossy(subject)
            ),
        ),
    }
}

/// A route's `RS-`.
pub(super) fn on_remote_unsub(
    b: &mut Broker,
    t: usize,
    account: &[u8],
    subject: &[u8],
    queue: Option<&[u8]>,
) {
    let key = interest_key(account, subject, queue);
    let now = b.conns.now;
    b.conns[t].last_activity = now;
    let Some(r) = b.conns[t].route_mut() else {
        return;
    };
    if let Some((acc, id)) = r.subs.remove(&key) {
        b.accounts[acc].sublist.remove(id);
    }
}

/// A new route gets all our interest at once.
pub(super) fn send_all(b: &mut Broker, t: usize) {
    let mut buf = Vec::new();
    for a in &b.accounts {
        for (key, &n) in &a.interest {
            let (subject, queue) = match key.iter().position(|&b| b == b' ') {
                Some(i) => (&key[..i], Some(&key[i + 1..])),
                None => (&key[..], None),
            };
            wire::write_interest(&mut buf, a.name.as_bytes(), subject, queue, n);
        }
    }
    if !buf.is_empty() {
        b.conns.queue(t, &buf);
    }
    debug!("{} - Sent local subscriptions to route", b.conns[t].label());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_lines() {
        let mut out = Vec::new();
        wire::write_interest(&mut out, b"$G", b"foo", None, 1);
        wire::write_interest(&mut out, b"$G", b"foo", None, 0);
        wire::write_interest(&mut out, b"$G", b"bar", Some(b"q"), 3);
        wire::write_interest(&mut out, b"$G", b"bar", Some(b"q"), 0);
        assert_eq!(
            out,
            b"RS+ $G foo\r\nRS- $G foo\r\nRS+ $G bar q 3\r\nRS- $G bar q\r\n"
        );
        assert_eq!(&*interest_key(b"$G", b"bar", Some(b"q")), b"$G bar q");
    }
}
