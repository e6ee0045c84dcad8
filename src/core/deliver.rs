//! A published message's way to its subscribers: match, then one copy per subscriber.
//!
//! `deliver` asks the subject index what the subject reaches (one hash lookup when cached),
//! then for every plain subscription and one member of every queue group appends
//! `MSG <subject> <sid> [reply] <size>\r\n<payload>\r\n` to that connection's write buffer.
//! The line is built once per message and sid (`MsgHead`: consecutive subscribers usually
//! share a sid, as clients number subscriptions from 1), so a delivery is one append of line,
//! payload and CRLF. A run of same-shaped messages (`Run`) is delivered to each subscriber in
//! one go where that cannot change what any connection sees. Nothing is written to sockets
//! here: touched connections sit on the dirty list and are flushed at the end of the loop pass
//! (or sooner, see `FLUSH_AT`). The output-side limits are enforced here too
//! (`Table::queued_for`: max_pending, and the producer stall when a consumer falls behind).
//!
//! With clustering on, subscriptions owned by routes stand for remote interest: each route
//! gets one `RMSG` per message, naming the queue groups it was picked for (see
//! `cluster/interest.rs`).
//! A subscription owned by a loop source (`internal.rs`) gets its copy in the broker's inbox.

use std::ops::Range;

use super::broker::Broker;
use crate::protocol::parser::Msg;
use crate::protocol::wire;
use crate::subject::sublist::SubId;
use crate::util::logger;
use log::debug;

/// Delivery's buffers, reused from message to message (kept for their capacity).
#[derive(Default)]
pub struct Scratch {
    /// The current message's MSG line parts.
    head: MsgHead,
    /// Routes a message goes to, with the queue groups picked there.
    route_targets: Vec<(usize, Vec<u8>)>,
    /// Auto-unsubscribes reached during a fan-out, applied after it.
    pub(super) unsub_later: Vec<SubId>,
    /// Payload ranges of the PUB run being gathered (`client::process`).
    pub(crate) run: Vec<Range<usize>>,
}

/// Consecutive messages of one publisher that differ only in their payloads: same subject,
/// no reply, same sizes. Delivering them together puts each subscriber's share in its buffer
/// in one go (`Broker::deliver_run`); the message frames are in `data`, their payloads at
/// `payloads`.
pub struct Run<'a> {
    pub data: &'a [u8],
    pub payloads: &'a [Range<usize>],
}

impl<'a> Run<'a> {
    /// The run's message with the payload at `r`: `first` (any of them) with that payload.
    pub(super) fn message<'m>(&self, first: &Msg<'m>, r: &Range<usize>) -> Msg<'m>
    where
        'a: 'm,
    {
        Msg {
            payload: &self.data[r.clone()],
            ..*first
        }
    }
}

/// The subscriber-independent parts of one message's MSG/HMSG line, built once.
#[derive(Default)]
pub struct MsgHead {
    /// `MSG <subject> ` or `HMSG <subject> `.
    prefix: Vec<u8>,
    /// `[reply ][hdr_len ]<size>\r\n`.
    suffix: Vec<u8>,
    /// For subscribers that did not ask for headers when the message has them:
    /// `MSG <subject> ` and `[reply ]<body size>\r\n`; the payload is then the body only.
    plain_prefix: Vec<u8>,
    plain_suffix: Vec<u8>,
    /// The whole line for one subscriber, `prefix sid suffix`, kept for the next one: clients
    /// number their subscriptions from 1, so consecutive subscribers often share a sid, and
    /// then their line is one copy. `line_sid`/`line_plain` say what it was built for.
    line: Vec<u8>,
    line_sid: Vec<u8>,
    line_plain: bool,
}

impl MsgHead {
    fn build(&mut self, m: &Msg) {
        fn head(out: &mut Vec<u8>, verb: &[u8], m: &Msg) {
            out.clear();
            out.extend_from_slice(verb);
            out.extend_from_slice(m.subject);
            out.push(b' ');
        }
        fn tail(out: &mut Vec<u8>, hdr: Option<&[u8]>, size: &[u8], m: &Msg) {
            out.clear();
            if !m.reply.is_empty() {
                out.extend_from_slice(m.reply);
                out.push(b' ');
            }
            if let Some(h) = hdr {
                out.extend_from_slice(h);
                out.push(b' ');
            }
            out.extend_from_slice(size);
            out.extend_from_slice(b"\r\n");
        }
        let verb: &[u8] = if m.hdr_size.is_some() {
            b"HMSG "
        } else {
            b"MSG "
        };
        self.line.clear();
        head(&mut self.prefix, verb, m);
        tail(&mut self.suffix, m.hdr_size, m.size, m);
        if m.hdr_size.is_some() {
            let mut digits = [0u8; 20];
            let body = (m.payload.len() - m.hdr_len) as u64;
            head(&mut self.plain_prefix, b"MSG ", m);
            tail(
                &mut self.plain_suffix,
                None,
                wire::digits(body, &mut digits),
                m,
            );
        }
    }

    /// The MSG/HMSG line for a subscriber with this sid (`plain`: one that gets the body
    /// only), built on the first use of that sid.
    #[inline]
    fn line(&mut self, sid: &[u8], plain: bool) -> &[u8] {
        if self.line.is_empty() || self.line_sid != sid || self.line_plain != plain {
            let (prefix, suffix) = if plain {
                (&self.plain_prefix, &self.plain_suffix)
            } else {
                (&self.prefix, &self.suffix)
            };
            self.line.clear();
            self.line.extend_from_slice(prefix);
            self.line.extend_from_slice(sid);
            self.line.push(b' ');
            self.line.extend_from_slice(suffix);
            self.line_sid.clear();
            self.line_sid.extend_from_slice(sid);
            self.line_plain = plain;
        }
        &self.line
    }
}

impl Broker {
    /// Delivers `m`, received on connection `from` (a client or a route), to the local
    /// subscribers and, for a client's message, to the routes with interest. Returns whether
    /// anyone got it.
    pub fn deliver(&mut self, from: usize, m: &Msg) -> bool {
        let from_route = !self.conns[from].is_client();
        let acc = if from_route {
            match self.account_index(&String::from_utf8_lossy(m.account)) {
                Some(a) => a,
                None => return false,
            }
        } else {
            self.conns[from].account
        };
        self.deliver_in(from, acc, from_route, m)
    }

    /// `deliver` in account `acc`; `from` is the publishing connection (or an internal
    /// publisher, `internal.rs`, which no connection matches).
    pub(super) fn deliver_in(
        &mut self,
        from: usize,
        acc: usize,
        from_route: bool,
        m: &Msg,
    ) -> bool {
        let once = self.one_off.iter().any(|p| m.subject.starts_with(p));
        self.deliver_as(from, acc, from_route, m.subject, m, once)
    }

    /// `deliver_in` to the subscribers of `to`, the MSG lines naming `m.subject`: JetStream
    /// delivers a stored message to a deliver subject or a pull request's inbox under the
    /// subject it was stored with. Routes get it on `to` (the subject their interest is in).
    /// `once`: `to` is a one-off subject (a reply inbox), not worth a place in the cache.
    pub(super) fn deliver_as(
        &mut self,
        from: usize,
        acc: usize,
        from_route: bool,
        to: &[u8],
        m: &Msg,
        once: bool,
    ) -> bool {
        let clustered = self.ident.cluster.is_some();
        let sublist = &mut self.accounts[acc].sublist;
        let found = if once {
            sublist.lookup_once(to)
        } else {
            sublist.lookup(to)
        };
        let Some(matches) = found else {
            return false;
        };
        let mut head = std::mem::take(&mut self.scratch.head);
        head.build(m);
        let mut delivered = false;
        for &id in &matches.plain {
            match clustered.then(|| self.route_of(acc, id)).flatten() {
                // Never from one route to another: the cluster is a one-hop full mesh.
                Some(rt) if !from_route => self.add_route_target(rt, None),
                Some(_) => {}
                None => delivered |= self.deliver_to(from, acc, id, m, &mut head),
            }
        }
        for group in &matches.groups {
            if from_route {
                // A routed message names the queue groups it is for; local members only.
                if m.queues.split(|&b| b == b' ').any(|q| q == &*group.name) {
                    let local: Vec<SubId> = group
                        .members
                        .iter()
                        .copied()
                        .filter(|&id| self.route_of(acc, id).is_none())
                        .collect();
                    delivered |= self.deliver_one_of(from, acc, &local, m, &mut head);
                }
            } else if clustered {
                delivered |=
                    self.deliver_weighted(from, acc, &group.name, &group.members, m, &mut head);
            } else {
                delivered |= self.deliver_one_of(from, acc, &group.members, m, &mut head);
            }
        }
        drop(matches);
        self.scratch.head = head;
        if !self.scratch.route_targets.is_empty() {
            delivered = true;
            self.send_to_routes(from, acc, &Msg { subject: to, ..*m });
        }
        if !self.scratch.unsub_later.is_empty() {
            self.apply_unsubs(acc);
        }
        delivered
    }

    /// One member of a queue group gets the message: start at a random one, take the first
    /// that accepts.
    fn deliver_one_of(
        &mut self,
        from: usize,
        acc: usize,
        members: &[SubId],
        m: &Msg,
        head: &mut MsgHead,
    ) -> bool {
        let n = members.len();
        let start = if n > 1 {
            (self.rng.next_u64() % n as u64) as usize
        } else {
            0
        };
        (0..n).any(|i| self.deliver_to(from, acc, members[(start + i) % n], m, head))
    }

    /// Whether subscription `id` is its connection's only one.
    fn sole_subscription(&self, acc: usize, id: SubId) -> bool {
        let conn = self.accounts[acc].sublist.get(id).map(|s| s.conn);
        conn.and_then(|t| self.conns.get(t))
            .is_some_and(|c| c.subs.len() == 1)
    }

    /// The route owning subscription `id`, if a route owns it.
    fn route_of(&self, acc: usize, id: SubId) -> Option<usize> {
        let t = self.accounts[acc].sublist.get(id)?.conn;
        (!self.conns.get(t)?.is_client()).then_some(t)
    }

    /// Whether connection `t` is a registered route (the only kind that gets messages).
    fn is_registered_route(&self, t: usize) -> bool {
        self.conns.get(t).is_some_and(|c| c.is_registered_route())
    }

    /// A queue pick across local members (weight 1) and routes (weight = the remote's member
    /// count), so each server's share follows its members, as nats-server's pick does.
    fn deliver_weighted(
        &mut self,
        from: usize,
        acc: usize,
        name: &[u8],
        members: &[SubId],
        m: &Msg,
        head: &mut MsgHead,
    ) -> bool {
        let weight = |b: &Broker, id: SubId| match b.route_of(acc, id) {
            Some(rt) if !b.is_registered_route(rt) => 0,
            Some(_) => b.accounts[acc]
                .sublist
                .get(id)
                .map_or(1, |s| s.weight.max(1) as u64),
            None => 1,
        };
        let total: u64 = members.iter().map(|&id| weight(self, id)).sum();
        if total == 0 {
            return false;
        }
        let mut pick = self.rng.next_u64() % total;
        let start = members
            .iter()
            .position(|&id| {
                let w = weight(self, id);
                if pick < w {
                    return true;
                }
                pick -= w;
                false
            })
            .unwrap_or(0);
        let n = members.len();
        for i in 0..n {
            let id = members[(start + i) % n];
            match self.route_of(acc, id) {
                Some(rt) if self.is_registered_route(rt) => {
                    self.add_route_target(rt, Some(name));
                    return true;
                }
                Some(_) => {}
                None if self.deliver_to(from, acc, id, m, head) => return true,
                None => {}
            }
        }
        false
    }

    /// Route `rt` gets the message (with queue group `queue` picked there), if registered:
    /// a connection on the cluster port that has not completed the handshake gets nothing.
    fn add_route_target(&mut self, rt: usize, queue: Option<&[u8]>) {
        if !self.is_registered_route(rt) {
            return;
        }
        let target = match self
            .scratch
            .route_targets
            .iter_mut()
            .position(|(t, _)| *t == rt)
        {
            Some(i) => &mut self.scratch.route_targets[i].1,
            None => {
                self.scratch.route_targets.push((rt, Vec::new()));
                &mut self
                    .scratch
                    .route_targets
                    .last_mut()
                    .expect("just pushed")
                    .1
            }
        };
        if let Some(q) = queue {
            target.extend_from_slice(q);
            target.push(b' ');
        }
    }

    /// One RMSG (HMSG with headers) per route target, naming the queue groups picked there.
    fn send_to_routes(&mut self, from: usize, acc: usize, m: &Msg) {
        let mut targets = std::mem::take(&mut self.scratch.route_targets);
        let account = self.accounts[acc].name.clone();
        for (rt, queues) in &targets {
            let rt = *rt;
            let Some(c) = self.conns.get_mut(rt).filter(|c| c.closing.is_none()) else {
                continue;
            };
            let mut digits = [0u8; 20];
            let (payload, hdr_size, size) = match m.hdr_size {
                Some(_) if !c.opts.headers => {
                    let body = &m.payload[m.hdr_len..];
                    (body, None, wire::digits(body.len() as u64, &mut digits))
                }
                h => (m.payload, h, m.size),
            };
            let out = &mut c.out;
            wire::write_rmsg_head(
                out,
                account.as_bytes(),
                m.subject,
                m.reply,
                queues,
                hdr_size,
                size,
            );
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
            c.counters.out_msgs += 1;
            c.counters.out_bytes += payload.len() as u64;
            self.stats.out_msgs += 1;
            self.stats.out_bytes += payload.len() as u64;
            self.conns.queued += payload.len() + 64;
            self.conns.queued_for(from, rt);
        }
        targets.clear();
        self.scratch.route_targets = targets;
    }

    /// Appends one copy of `m` for subscription `id` of account `acc`. False if it could not
    /// take it (echo off for its own messages, denied by its permissions, closing, or past its
    /// auto-unsubscribe limit).
    #[inline]
    fn deliver_to(
        &mut self,
        from: usize,
        acc: usize,
        id: SubId,
        m: &Msg,
        head: &mut MsgHead,
    ) -> bool {
        self.deliver_run_to(from, acc, id, m, None, head)
    }

    /// Delivers a run of messages that differ only in their payloads (see `Run`), as
    /// `deliver` would one by one. A run of one is just `deliver`.
    pub fn deliver_run(&mut self, from: usize, m: &Msg, run: &Run) {
        if run.payloads.len() == 1 || self.ident.cluster.is_some() {
            for r in run.payloads {
                self.deliver(from, &run.message(m, r));
            }
            return;
        }
        let acc = self.conns[from].account;
        let Some(matches) = self.accounts[acc].sublist.lookup(m.subject) else {
            return;
        };
        let mut head = std::mem::take(&mut self.scratch.head);
        head.build(m);
        // A connection with one subscription takes the run in one go. The others take it
        // message by message, as `deliver` gives it, so a connection whose subscriptions
        // overlap sees the same interleaving as from nats-server.
        let mut others = !matches.groups.is_empty();
        for &id in &matches.plain {
            if self.sole_subscription(acc, id) {
                self.deliver_run_to(from, acc, id, m, Some(run), &mut head);
            } else {
                others = true;
            }
        }
        for r in run.payloads.iter().filter(|_| others) {
            let m = run.message(m, r);
            for &id in &matches.plain {
                if !self.sole_subscription(acc, id) {
                    self.deliver_to(from, acc, id, &m, &mut head);
                }
            }
            for group in &matches.groups {
                self.deliver_one_of(from, acc, &group.members, &m, &mut head);
            }
        }
        drop(matches);
        self.scratch.head = head;
        if !self.scratch.unsub_later.is_empty() {
            self.apply_unsubs(acc);
        }
    }

    /// `deliver_to` for `m` alone or, given a run, for each of its payloads in turn (`m` is
    /// then the run's first message). A run is appended in one go: the checks are made once,
    /// and the copies read the run's frames while they are in the CPU's cache and write one
    /// stretch of the subscriber's buffer (message by message, a wide fan-out writes a little
    /// into every subscriber's buffer in turn, each time from cold memory).
    fn deliver_run_to(
        &mut self,
        from: usize,
        acc: usize,
        id: SubId,
        m: &Msg,
        run: Option<&Run>,
        head: &mut MsgHead,
    ) -> bool {
        let water = self.conns.stall_water();
        let now = self.conns.now;
        let Some(sub) = self.accounts[acc].sublist.get_mut(id) else {
            return false;
        };
        let t = sub.conn;
        let c = match self.conns.slab.get_mut(t) {
            Some(c) if c.closing.is_none() => c,
            Some(_) => return false,
            // No connection: an internal subscription's message goes to its owner's inbox.
            None => return self.deliver_internal(acc, id, m, run),
        };
        if t == from && !c.opts.echo {
            return false;
        }
        if let Some(p) = &mut c.perms {
            if p.has_sub_deny() && p.deliver_denied(m.subject) {
                return false;
            }
            if !m.reply.is_empty() && p.tracks_replies() {
                p.saw_reply(m.reply, now);
            }
        }
        if let Some(run) = run.filter(|_| sub.max > 0) {
            // Auto-unsubscribe counts each message: one at a time.
            let mut any = false;
            for r in run.payloads {
                any |= self.deliver_run_to(from, acc, id, &run.message(m, r), None, head);
            }
            return any;
        }
        let n = run.map_or(1, |r| r.payloads.len());
        sub.delivered += n as u64;
        if sub.max > 0 && sub.delivered >= sub.max {
            // A message past the limit is dropped; at the limit the subscription is removed
            // once this fan-out is over.
            if sub.delivered > sub.max {
                return false;
            }
            self.scratch.unsub_later.push(id);
        }
        // A subscriber that did not ask for headers gets the body only, as a MSG.
        let plain = m.hdr_size.is_some() && !c.opts.headers;
        let payload = if plain {
            &m.payload[m.hdr_len..]
        } else {
            m.payload
        };
        let line = head.line(&sub.sid, plain);
        match run {
            None => append_msg(&mut c.out, line, payload),
            Some(run) => {
                // Same sizes throughout: one reservation for the whole run.
                c.out.reserve(n * (line.len() + payload.len() + 2));
                let skip = m.payload.len() - payload.len();
                for r in run.payloads {
                    append_msg(&mut c.out, line, &run.data[r.start + skip..r.end]);
                }
            }
        }
        let n64 = n as u64;
        c.counters.out_msgs += n64;
        c.counters.out_bytes += payload.len() as u64 * n64;
        c.last_activity = now;
        // The dirty list (as `queued_for`, inline: `c` is at hand).
        if !c.dirty {
            c.dirty = true;
            self.conns.dirty.push(t);
        }
        let over_water = c.pending() > water;
        self.conns.queued += (payload.len() + 64) * n;
        self.stats.out_msgs += n64;
        self.stats.out_bytes += payload.len() as u64 * n64;
        if logger::trace_on() {
            let head = format!(
                "MSG {} {} {}",
                String::from_utf8_lossy(m.subject),
                String::from_utf8_lossy(&sub.sid),
                payload.len()
            );
            self.trace_out(t, &head);
        }
        if over_water {
            self.conns.over_water(from, t);
        }
        true
    }
}

impl Broker {
    /// Applies the auto-unsubscribes that a fan-out in account `acc` reached.
    pub fn apply_unsubs(&mut self, acc: usize) {
        while let Some(id) = self.scratch.unsub_later.pop() {
            if let Some(owner) = self.accounts[acc].sublist.get(id).map(|s| s.conn) {
                if let Some(c) = self.conns.get(owner) {
                    debug!("{} - Auto-unsubscribe limit reached", c.label());
                }
                self.remove_sub(owner, id);
            }
        }
    }
}

/// Appends `line`, `payload` and CRLF to `out` with one capacity check: the copy every
/// delivery makes, so it is the hot path's inner loop (three `extend_from_slice` calls cost
/// three checks and three out-of-line calls).
#[inline]
fn append_msg(out: &mut Vec<u8>, line: &[u8], payload: &[u8]) {
    let n = line.len() + payload.len() + 2;
    out.reserve(n);
    let len = out.len();
    // SAFETY: `reserve` made room for `n` more bytes after `len`; the two copies and the
    // CRLF fill exactly those bytes, from slices that are not part of `out`, before the
    // length is moved over them.
    unsafe {
        let dst = out.as_mut_ptr().add(len);
        std::ptr::copy_nonoverlapping(line.as_ptr(), dst, line.len());
        std::ptr::copy_nonoverlapping(payload.as_ptr(), dst.add(line.len()), payload.len());
        dst.add(n - 2).cast::<[u8; 2]>().write_unaligned(*b"\r\n");
        out.set_len(len + n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<'a>(
        reply: &'a [u8],
        hdr: Option<&'a [u8]>,
        hdr_len: usize,
        size: &'a [u8],
        payload: &'a [u8],
    ) -> Msg<'a> {
        Msg {
            account: b"",
            subject: b"foo.bar",
            reply,
            queues: b"",
            hdr_size: hdr,
            hdr_len,
            size,
            len: payload.len(),
            payload,
        }
    }

    #[test]
    fn msg_line_parts() {
        let mut h = MsgHead::default();
        h.build(&msg(b"", None, 0, b"005", b"hello"));
        assert_eq!(
            (&h.prefix[..], &h.suffix[..]),
            (&b"MSG foo.bar "[..], &b"005\r\n"[..])
        );
        h.build(&msg(
            b"_INBOX.1",
            Some(b"12"),
            12,
            b"14",
            b"NATS/1.0\r\n\r\nhi",
        ));
        assert_eq!(
            (&h.prefix[..], &h.suffix[..]),
            (&b"HMSG foo.bar "[..], &b"_INBOX.1 12 14\r\n"[..])
        );
        assert_eq!(
            (&h.plain_prefix[..], &h.plain_suffix[..]),
            (&b"MSG foo.bar "[..], &b"_INBOX.1 2\r\n"[..])
        );
    }

    #[test]
    fn lines_follow_sid_and_plain() {
        let mut h = MsgHead::default();
        let m = msg(b"r", Some(b"12"), 12, b"14", b"NATS/1.0\r\n\r\nhi");
        h.build(&m);
        assert_eq!(h.line(b"1", false), b"HMSG foo.bar 1 r 12 14\r\n");
        assert_eq!(h.line(b"1", false), b"HMSG foo.bar 1 r 12 14\r\n");
        assert_eq!(h.line(b"22", false), b"HMSG foo.bar 22 r 12 14\r\n");
        assert_eq!(h.line(b"22", true), b"MSG foo.bar 22 r 2\r\n");
        // A new message never reuses the previous message's line.
        h.build(&msg(b"", None, 0, b"1", b"x"));
        assert_eq!(h.line(b"22", false), b"MSG foo.bar 22 1\r\n");
        let mut out = b"PONG\r\n".to_vec();
        append_msg(&mut out, h.line(b"22", false), b"x");
        assert_eq!(out, b"PONG\r\nMSG foo.bar 22 1\r\nx\r\n");
    }
}
