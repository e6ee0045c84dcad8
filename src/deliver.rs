//! A published message's way to its subscribers: match, then one copy per subscriber.
//!
//! `deliver` asks the subject index what the subject reaches (one hash lookup when cached),
//! then for every plain subscription and one member of every queue group appends
//! `MSG <subject> <sid> [reply] <size>\r\n<payload>\r\n` to that connection's write buffer.
//! Nothing is written to sockets here: the touched connections sit on the dirty list and are
//! flushed once at the end of the loop pass. This is also where the per-connection limits of
//! the output side are enforced (max_pending via `after_queue`) and where a producer learns
//! that a consumer it feeds is congested (`maybe_stall`).

use crate::broker::Broker;
use crate::parser::Msg;
use crate::proto;
use crate::sublist::SubId;

impl Broker {
    /// Delivers `m`, published by connection `from`, to local subscribers. Returns whether
    /// anyone got it.
    pub fn deliver(&mut self, from: usize, m: &Msg) -> bool {
        let acc = self.conns[from].account;
        let matches = self.accounts[acc].sublist.matches(m.subject);
        if matches.is_empty() {
            return false;
        }
        let mut delivered = false;
        for &id in &matches.plain {
            delivered |= self.deliver_to(from, acc, id, m);
        }
        for group in &matches.groups {
            // One member per group: start at a random one, take the first that accepts.
            let n = group.members.len();
            let start = if n > 1 {
                (self.rand() % n as u64) as usize
            } else {
                0
            };
            for i in 0..n {
                if self.deliver_to(from, acc, group.members[(start + i) % n], m) {
                    delivered = true;
                    break;
                }
            }
        }
        drop(matches);
        if !self.unsub_later.is_empty() {
            self.apply_unsubs(acc);
        }
        delivered
    }

    /// Appends one copy of `m` for subscription `id` of account `acc`. False if it could not
    /// take it (echo off for its own messages, denied by its permissions, closing, or past its
    /// auto-unsubscribe limit).
    #[inline]
    fn deliver_to(&mut self, from: usize, acc: usize, id: SubId, m: &Msg) -> bool {
        let Some(sub) = self.accounts[acc].sublist.get_mut(id) else {
            return false;
        };
        let t = sub.conn;
        let c = match self.conns.get_mut(t) {
            Some(c) if c.closing.is_none() => c,
            _ => return false,
        };
        if t == from && !c.opts.echo {
            return false;
        }
        if let Some(p) = &mut c.perms {
            if p.has_sub_deny() && p.deliver_denied(m.subject) {
                return false;
            }
            if !m.reply.is_empty() && p.tracks_replies() {
                p.saw_reply(m.reply, self.now);
            }
        }
        sub.delivered += 1;
        if sub.max > 0 && sub.delivered >= sub.max {
            // A message past the limit is dropped; at the limit the subscription is removed
            // once this fan-out is over.
            if sub.delivered > sub.max {
                return false;
            }
            self.unsub_later.push(id);
        }
        let mut digits = [0u8; 20];
        let (payload, hdr_size, size) = match m.hdr_size {
            // A subscriber that did not ask for headers gets the body only, as a MSG.
            Some(_) if !c.opts.headers => {
                let body = &m.payload[m.hdr_len..];
                (body, None, proto::digits(body.len() as u64, &mut digits))
            }
            h => (m.payload, h, m.size),
        };
        let out = &mut c.out;
        out.reserve(m.subject.len() + sub.sid.len() + m.reply.len() + payload.len() + 32);
        proto::write_msg_head(out, m.subject, &sub.sid, m.reply, hdr_size, size);
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        c.counters.out_msgs += 1;
        c.counters.out_bytes += payload.len() as u64;
        self.queued += payload.len() + 64;
        self.stats.out_msgs += 1;
        self.stats.out_bytes += payload.len() as u64;
        if self.trace {
            let head = format!(
                "MSG {} {} {}",
                String::from_utf8_lossy(m.subject),
                String::from_utf8_lossy(&sub.sid),
                payload.len()
            );
            self.trace_out(t, &head);
        }
        self.after_queue(t);
        self.maybe_stall(from, t);
        true
    }
}
