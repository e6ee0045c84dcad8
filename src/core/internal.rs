//! Internal subscriptions: subscriptions owned by a loop source rather than a connection
//! (JetStream's stream subjects and `$JS.API`), and publishing into an account from a source.
//!
//! An internal subscription lives in its account's subject index like any other, so one
//! lookup finds it, and routes learn the interest. Its owner (`Sub::conn`) is `INTERNAL` plus
//! the source's id, a number no connection token reaches: the fan-out (`deliver.rs`) finds
//! no connection for it and appends the message to the broker's inbox instead (one copy),
//! where the source takes it (`take_inbox`) in its `end_of_pass`. It counts as delivered,
//! so a requester gets no 503 no-responders.

use super::broker::Broker;
use super::deliver::Run;
use crate::protocol::parser::Msg;
use crate::protocol::wire;
use crate::subject::sublist::{InvalidSubject, Sub, SubId};

/// Owners at and above this are sources, not connections.
pub const INTERNAL: usize = usize::MAX / 4 * 3;

/// A message delivered to an internal subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalMsg {
    /// The source whose subscription it matched, and that subscription.
    pub owner: usize,
    pub sub: SubId,
    pub account: usize,
    /// How many bytes of `payload()` are headers (`NATS/1.0 ...`): 0 without.
    pub hdr_len: usize,
    /// Subject, reply and payload one after the other: one allocation per message instead
    /// of three (every ack and stream publish comes through here).
    buf: Vec<u8>,
    subject_len: usize,
    reply_len: usize,
}

impl InternalMsg {
    fn new(owner: usize, sub: SubId, account: usize, m: &Msg) -> InternalMsg {
        let mut buf = Vec::with_capacity(m.subject.len() + m.reply.len() + m.payload.len());
        buf.extend_from_slice(m.subject);
        buf.extend_from_slice(m.reply);
        buf.extend_from_slice(m.payload);
        InternalMsg {
            owner,
            sub,
            account,
            hdr_len: m.hdr_size.map_or(0, |_| m.hdr_len),
            buf,
            subject_len: m.subject.len(),
            reply_len: m.reply.len(),
        }
    }

    pub fn subject(&self) -> &[u8] {
        &self.buf[..self.subject_len]
    }

    pub fn reply(&self) -> &[u8] {
        &self.buf[self.subject_len..self.subject_len + self.reply_len]
    }

    pub fn payload(&self) -> &[u8] {
        &self.buf[self.subject_len + self.reply_len..]
    }
}

/// A message a source publishes: to the subscribers of `to`, `subject` on the MSG lines.
#[derive(Clone, Copy)]
struct Outgoing<'a> {
    to: &'a [u8],
    subject: &'a [u8],
    reply: &'a [u8],
    hdr: &'a [u8],
    body: &'a [u8],
}

impl Broker {
    /// Subscribes source `owner` to `subject` (in queue group `queue`, if any) in account
    /// `acc`. `sid` names the subscription in monitoring.
    pub fn subscribe_internal(
        &mut self,
        owner: usize,
        acc: usize,
        subject: &[u8],
        queue: Option<&[u8]>,
        sid: &[u8],
    ) -> Result<SubId, InvalidSubject> {
        let sub = Sub::new(INTERNAL + owner, subject, queue, sid);
        let id = self.accounts[acc].sublist.insert(sub)?;
        self.interest_changed(acc, subject, queue, 1);
        Ok(id)
    }

    /// Removes an internal subscription.
    pub fn unsubscribe_internal(&mut self, acc: usize, id: SubId) {
        if let Some(sub) = self.accounts[acc].sublist.remove(id) {
            self.interest_changed(acc, &sub.subject, sub.queue.as_deref(), -1);
        }
    }

    /// Publishes a message into account `acc` as a client of it would (subscribers and routes
    /// with interest get it), from source `owner`; `hdr` holds the headers (`NATS/1.0 ...`),
    /// if any, before `body`. Returns whether anyone got it.
    pub fn publish_internal(
        &mut self,
        owner: usize,
        acc: usize,
        subject: &[u8],
        reply: &[u8],
        hdr: &[u8],
        body: &[u8],
    ) -> bool {
        self.publish_internal_as(owner, acc, subject, subject, reply, hdr, body)
    }

    /// `publish_internal` to the subscribers of `to`, with `subject` on the MSG lines (a
    /// JetStream delivery keeps the subject the message was stored with).
    #[allow(clippy::too_many_arguments)]
    pub fn publish_internal_as(
        &mut self,
        owner: usize,
        acc: usize,
        to: &[u8],
        subject: &[u8],
        reply: &[u8],
        hdr: &[u8],
        body: &[u8],
    ) -> bool {
        let m = Outgoing {
            to,
            subject,
            reply,
            hdr,
            body,
        };
        self.publish_outgoing(owner, acc, &m, false)
    }

    /// `publish_internal` of a reply to a requester's inbox (a PubAck, an API reply): the
    /// subject is used once, so its lookup does not fill the subject cache.
    pub fn reply_internal(
        &mut self,
        owner: usize,
        acc: usize,
        to: &[u8],
        hdr: &[u8],
        body: &[u8],
    ) -> bool {
        let m = Outgoing {
            to,
            subject: to,
            reply: b"",
            hdr,
            body,
        };
        self.publish_outgoing(owner, acc, &m, true)
    }

    fn publish_outgoing(&mut self, owner: usize, acc: usize, out: &Outgoing, once: bool) -> bool {
        let Outgoing {
            to,
            subject,
            reply,
            hdr,
            body,
        } = *out;
        // Headers and body are one payload on the wire; without headers, no copy to make one.
        let joined;
        let payload: &[u8] = if hdr.is_empty() {
            body
        } else {
            joined = [hdr, body].concat();
            &joined
        };
        let (mut size, mut hdr_size) = ([0u8; 20], [0u8; 20]);
        let m = Msg {
            account: b"",
            subject,
            reply,
            queues: b"",
            hdr_size: (!hdr.is_empty()).then(|| wire::digits(hdr.len() as u64, &mut hdr_size)),
            hdr_len: hdr.len(),
            size: wire::digits(payload.len() as u64, &mut size),
            len: payload.len(),
            payload,
        };
        // Not counted in the server's in_msgs: as in nats-server, those count what connections
        // send (its internal clients never add to them).
        self.deliver_as(INTERNAL + owner, acc, false, to, &m, once)
    }

    /// The messages delivered to source `owner`'s subscriptions since it last asked.
    pub fn take_inbox(&mut self, owner: usize) -> Vec<InternalMsg> {
        let mut mine = Vec::new();
        self.take_inbox_into(owner, &mut mine);
        mine
    }

    /// `take_inbox` appending to `out`: both vectors keep their capacity from pass to pass
    /// (a busy stream gets thousands of messages a pass).
    pub fn take_inbox_into(&mut self, owner: usize, out: &mut Vec<InternalMsg>) {
        if self.inbox.iter().all(|m| m.owner == owner) {
            out.append(&mut self.inbox);
            return;
        }
        let mut others = Vec::new();
        for m in self.inbox.drain(..) {
            if m.owner == owner {
                out.push(m);
            } else {
                others.push(m);
            }
        }
        self.inbox.append(&mut others);
    }

    /// Appends `m` (or each message of `run`) for internal subscription `id` to the inbox.
    /// False if `id` is not internal (its connection is gone) or past its auto-unsubscribe
    /// limit.
    pub(super) fn deliver_internal(
        &mut self,
        acc: usize,
        id: SubId,
        m: &Msg,
        run: Option<&Run>,
    ) -> bool {
        if let Some(run) = run {
            let mut any = false;
            for r in run.payloads {
                any |= self.deliver_internal(acc, id, &run.message(m, r), None);
            }
            return any;
        }
        let Some(sub) = self.accounts[acc].sublist.get_mut(id) else {
            return false;
        };
        let Some(owner) = sub.conn.checked_sub(INTERNAL) else {
            return false;
        };
        sub.delivered += 1;
        if sub.max > 0 && sub.delivered >= sub.max {
            if sub.delivered > sub.max {
                return false;
            }
            self.scratch.unsub_later.push(id);
        }
        // Not counted in the server's out_msgs: nats-server counts what goes out to
        // connections, not what its internal subscriptions take.
        self.inbox.push(InternalMsg::new(owner, id, acc, m));
        true
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::core::testing::World;
    use std::io::Read;

    /// A source's subscription gets a client's message (one copy, counted as delivered), and
    /// what a source publishes reaches a client's subscription.
    #[test]
    fn sources_subscribe_and_publish_in_an_account() {
        let mut w = World::new(Config::default());
        let c = w.client();
        w.send(
            c,
            b"CONNECT {\"verbose\":false,\"headers\":true}\r\nSUB out 7\r\n",
        );
        let id = w.b.subscribe_internal(2, 0, b"in.*", None, b"js").unwrap();
        w.send(c, b"HPUB in.x r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
        let got = w.b.take_inbox(2);
        assert_eq!(got.len(), 1);
        let m = &got[0];
        assert_eq!((m.owner, m.sub, m.account, m.hdr_len), (2, id, 0, 12));
        assert_eq!((m.subject(), m.reply()), (&b"in.x"[..], &b"r"[..]));
        assert_eq!(m.payload(), b"NATS/1.0\r\n\r\nhi");
        assert!(w.b.take_inbox(2).is_empty());

        assert!(w.b.publish_internal(2, 0, b"out", b"", b"", b"ack"));
        w.b.conns.flush_dirty();
        let peer = &mut w.peers[0];
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut seen = Vec::new();
        while !seen.ends_with(b"MSG out 7 3\r\nack\r\n") {
            let mut buf = [0u8; 4096];
            let n = peer.read(&mut buf).unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        w.b.unsubscribe_internal(0, id);
        w.send(c, b"PUB in.x 1\r\nx\r\n");
        assert!(w.b.take_inbox(2).is_empty());
    }
}
