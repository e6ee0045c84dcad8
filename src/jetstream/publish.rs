//! Publishing into a stream: nats-server 2.9.10's `processJetStreamMsg` checks in its order
//! (sealed, Nats-Expected-Stream, the Nats-Msg-Id window, Nats-Expected-Last-Subject-Sequence,
//! Nats-Expected-Last-Sequence, Nats-Expected-Last-Msg-Id, Nats-Rollup, max_msg_size, the
//! 64 KiB header limit, server limits, interest retention, the store's discard-new limits,
//! account limits), then the PubAck bytes exactly as nats-server writes them:
//! `{"stream":"ORDERS", "seq":1}`, `{"stream":"ORDERS", "seq":2,"duplicate": true}` and
//! `{"error":{..},"stream":"ORDERS","seq":0}`. A refused message consumes no sequence
//! (except over account limits: nats-server stores, then removes it).

use super::api::errors::{self as e, ApiError};
use super::headers;
use super::store::StoreError;
use super::stream::Stream;
use crate::protocol::json::Obj;

/// A message for the stream, as the client sent it.
pub struct Inbound<'a> {
    pub subject: &'a str,
    /// The header block (`NATS/1.0\r\n...\r\n\r\n`), empty when there is none.
    pub hdr: &'a [u8],
    pub data: &'a [u8],
    /// Whether the publisher gave a reply subject (no reply: no PubAck).
    pub has_reply: bool,
}

/// The world outside the stream that a publish is checked against.
pub struct PubCtx {
    pub now_ns: i64,
    /// The server is over its `max_memory_store` / `max_file_store` for this storage (10023).
    pub server_full: bool,
}

/// A message that was stored (or whose sequence was consumed without storing it).
#[derive(Debug, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    /// The PubAck to send once the store's flush (and, with `sync: always`, its fsync) is
    /// done. None with `no_ack` or without a reply subject.
    pub ack: Option<Vec<u8>>,
    /// nats-server's `republish`: publish this after the flush too.
    pub republish: Option<Republish>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Republish {
    pub subject: String,
    pub hdr: Vec<u8>,
    pub data: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PubOutcome {
    Stored(Stored),
    /// Nothing stored: send this reply now (None: no reply at all).
    Done(Option<Vec<u8>>),
}

impl Stream {
    /// Runs a message through the checks and into the store. `over_account` is asked after
    /// the store took the message whether the account is now over its limits (nats-server
    /// then removes the message again and answers 10002).
    pub fn publish(
        &mut self,
        msg: &Inbound,
        ctx: &PubCtx,
        over_account: impl FnOnce(&Stream) -> bool,
    ) -> PubOutcome {
        if self.config.sealed {
            let ack = msg
                .has_reply
                .then(|| self.error_ack(&ApiError::new(e::STREAM_SEALED)));
            return PubOutcome::Done(ack);
        }
        let can_respond = !self.config.no_ack && msg.has_reply;
        let refuse =
            |s: &Stream, err: ApiError| PubOutcome::Done(can_respond.then(|| s.error_ack(&err)));
        let hdr_owned;
        let mut hdr = msg.hdr;
        if !hdr.is_empty() && headers::get(headers::REQUEST_INFO, hdr).is_some() {
            hdr_owned = headers::remove(hdr, headers::REQUEST_INFO).unwrap_or_default();
            hdr = &hdr_owned;
        }
        let mut msg_id = String::new();
        let mut rollup = Rollup::None;
        // Every header JetStream reads starts with `Nats-`: most header blocks need no more.
        if !hdr.is_empty() && memchr::memmem::find(hdr, b"Nats-").is_some() {
            match self.header_checks(msg.subject, hdr, ctx.now_ns, can_respond) {
                Ok((id, r)) => (msg_id, rollup) = (id, r),
                Err(outcome) => return outcome,
            }
        }
        let max = self.config.max_msg_size;
        if max >= 0 && (hdr.len() + msg.data.len()) as i64 > max {
            return refuse(self, ApiError::new(e::STREAM_MESSAGE_EXCEEDS_MAXIMUM));
        }
        if hdr.len() > usize::from(u16::MAX) {
            return refuse(self, ApiError::new(e::STREAM_HEADER_EXCEEDS_MAXIMUM));
        }
        if ctx.server_full {
            return refuse(self, ApiError::new(e::INSUFFICIENT_RESOURCES));
        }
        if self.no_interest(msg.subject) {
            return self.skip(&msg_id, ctx.now_ns, can_respond, refuse);
        }
        // Republished messages carry the subject's previous sequence (for gap detection).
        let prev = match self.republish {
            Some(_) => self
                .store
                .last_for_subject(msg.subject.as_bytes())
                .unwrap_or(0),
            None => 0,
        };
        let before = self.store.state().msgs;
        let seq = match self
            .store
            .append(msg.subject.as_bytes(), hdr, msg.data, ctx.now_ns)
        {
            Ok(seq) => seq,
            Err(err) => return refuse(self, store_error(&err)),
        };
        if self.store.state().msgs != before + 1 && !self.consumers.is_empty() {
            // Limits took older messages: consumers recount what they have left.
            self.consumers_recount();
        }
        if over_account(self) {
            self.store.remove(seq, false);
            return refuse(self, ApiError::new(e::ACCOUNT_RESOURCES_EXCEEDED));
        }
        let done = Done {
            seq,
            prev,
            msg_id,
            rollup,
        };
        self.stored(msg, hdr, done, ctx.now_ns, can_respond)
    }

    /// Bookkeeping after a successful append: the id window, rollups, the ack, republish.
    fn stored(
        &mut self,
        msg: &Inbound,
        hdr: &[u8],
        done: Done,
        now_ns: i64,
        can_respond: bool,
    ) -> PubOutcome {
        let seq = done.seq;
        if !done.msg_id.is_empty() {
            self.dedupe.store(&done.msg_id, seq, now_ns);
        }
        self.last_msg_id = done.msg_id;
        match done.rollup {
            Rollup::Subject => {
                self.store
                    .purge(Some(msg.subject.as_bytes()), None, Some(1));
                self.consumers_purged(Some(msg.subject));
            }
            Rollup::All => {
                self.store.purge(None, None, Some(1));
                self.consumers_purged(None);
            }
            Rollup::None => {}
        }
        let republish = self.republish_for(msg, hdr, seq, done.prev);
        self.consumers_on_append(seq, msg.subject.as_bytes());
        PubOutcome::Stored(Stored {
            seq,
            ack: can_respond.then(|| self.ok_ack(seq, false)),
            republish,
        })
    }

    /// Interest retention without consumers: the sequence is consumed, nothing is stored,
    /// and the id is remembered with sequence 0 (nats-server records its unset `seq`).
    fn skip(
        &mut self,
        msg_id: &str,
        now_ns: i64,
        can_respond: bool,
        refuse: impl Fn(&Stream, ApiError) -> PubOutcome,
    ) -> PubOutcome {
        let seq = match self.store.skip(now_ns) {
            Ok(seq) => seq,
            Err(err) => return refuse(self, store_error(&err)),
        };
        self.last_msg_id = msg_id.to_string();
        if !msg_id.is_empty() {
            self.dedupe.store(msg_id, 0, now_ns);
        }
        PubOutcome::Stored(Stored {
            seq,
            ack: can_respond.then(|| self.ok_ack(seq, false)),
            republish: None,
        })
    }

    /// The header checks, in order. Ok: the message's id and rollup; Err: the outcome.
    fn header_checks(
        &mut self,
        subject: &str,
        hdr: &[u8],
        now_ns: i64,
        can_respond: bool,
    ) -> Result<(String, Rollup), PubOutcome> {
        let refuse =
            |s: &Stream, err: ApiError| PubOutcome::Done(can_respond.then(|| s.error_ack(&err)));
        let expected = headers::get_str(headers::EXPECTED_STREAM, hdr);
        if !expected.is_empty() && expected != self.config.name {
            return Err(refuse(self, ApiError::new(e::STREAM_NOT_MATCH)));
        }
        let msg_id = headers::get_str(headers::MSG_ID, hdr);
        if !msg_id.is_empty() {
            self.load_dedupe(now_ns);
            if let Some(seq) = self
                .dedupe
                .check(&msg_id, now_ns, self.config.duplicate_window)
            {
                return Err(PubOutcome::Done(
                    can_respond.then(|| self.ok_ack(seq, true)),
                ));
            }
        }
        if let Some(want) = headers::get_seq(headers::EXPECTED_LAST_SUBJ_SEQ, hdr) {
            let have = self.store.last_for_subject(subject.as_bytes()).unwrap_or(0);
            if have != want {
                return Err(refuse(self, ApiError::wrong_last_sequence(have)));
            }
        }
        if let Some(want) = headers::get_seq(headers::EXPECTED_LAST_SEQ, hdr) {
            let last = self.store.state().last_seq;
            if want != last {
                return Err(refuse(self, ApiError::wrong_last_sequence(last)));
            }
        }
        let last_id = headers::get_str(headers::EXPECTED_LAST_MSG_ID, hdr);
        if !last_id.is_empty() {
            if self.last_msg_id.is_empty() {
                self.load_dedupe(now_ns);
            }
            if last_id != self.last_msg_id {
                let err = ApiError::wrong_last_msg_id(&self.last_msg_id);
                return Err(refuse(self, err));
            }
        }
        let rollup = headers::get_str(headers::ROLLUP, hdr).to_ascii_lowercase();
        if rollup.is_empty() {
            return Ok((msg_id, Rollup::None));
        }
        if !self.config.allow_rollup_hdrs || self.config.deny_purge {
            let err = ApiError::with(e::STREAM_ROLLUP_FAILED, "rollup not permitted");
            return Err(refuse(self, err));
        }
        match rollup.as_str() {
            "sub" => Ok((msg_id, Rollup::Subject)),
            "all" => Ok((msg_id, Rollup::All)),
            // nats-server drops the message without a word.
            _ => Err(PubOutcome::Done(None)),
        }
    }

    /// nats-server's `rebuildDedupe`: the ids stored within the window, and the last
    /// message's id, read back from the stored headers (once, after a restart).
    fn load_dedupe(&mut self, now_ns: i64) {
        if self.dedupe_loaded {
            return;
        }
        self.dedupe_loaded = true;
        let from = now_ns.saturating_sub(self.config.duplicate_window);
        let Some(first) = self.store.seq_at_or_after_time(from) else {
            return;
        };
        let last = self.store.state().last_seq;
        for seq in first..=last {
            let Some(m) = self.store.load(seq) else {
                continue;
            };
            let id = headers::get_str(headers::MSG_ID, m.hdr());
            if !id.is_empty() {
                self.dedupe.store(&id, seq, m.ts);
            }
            if seq == last {
                self.last_msg_id = id;
            }
        }
    }

    fn republish_for(&self, msg: &Inbound, hdr: &[u8], seq: u64, last: u64) -> Option<Republish> {
        let tr = self.republish.as_ref()?;
        let subject = tr.apply(msg.subject)?;
        let rp = self.config.republish.as_ref()?;
        let mut h = headers::append(hdr, headers::STREAM, &self.config.name);
        h = headers::append(&h, headers::SUBJECT, msg.subject);
        h = headers::append(&h, headers::SEQUENCE, &seq.to_string());
        h = headers::append(&h, headers::LAST_SEQUENCE, &last.to_string());
        let data = if rp.headers_only {
            h = headers::append(&h, headers::MSG_SIZE, &msg.data.len().to_string());
            Vec::new()
        } else {
            msg.data.to_vec()
        };
        Some(Republish {
            subject,
            hdr: h,
            data,
        })
    }

    /// `{"stream":"S", "seq":N}` or, for a duplicate, `{"stream":"S", "seq":N,"duplicate": true}`.
    pub fn ok_ack(&self, seq: u64, duplicate: bool) -> Vec<u8> {
        use std::fmt::Write;
        let mut a = String::with_capacity(self.pub_ack.len() + 40);
        a.push_str(&self.pub_ack);
        let _ = write!(a, "{seq}"); // into the String: no temporary allocation
        if duplicate {
            a.push_str(",\"duplicate\": true");
        }
        a.push('}');
        a.into_bytes()
    }

    /// `{"error":{..},"stream":"S","seq":0}` (a domain, when set, follows `seq`).
    pub fn error_ack(&self, err: &ApiError) -> Vec<u8> {
        let mut s = String::with_capacity(128);
        let mut o = Obj::new(&mut s);
        o.raw("error", &err.json())
            .str("stream", &self.config.name)
            .uint("seq", 0);
        if let Some(d) = &self.domain {
            o.str("domain", d);
        }
        o.end();
        s.into_bytes()
    }
}

/// What a successful append leaves for the bookkeeping.
struct Done {
    seq: u64,
    /// The subject's previous last sequence (0: none), for republish.
    prev: u64,
    msg_id: String,
    rollup: Rollup,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rollup {
    None,
    Subject,
    All,
}

/// 10077 with the store's reason (nats-server's wording for the discard-new limits).
pub fn store_error(err: &StoreError) -> ApiError {
    ApiError::with(e::STREAM_STORE_FAILED, err.to_string())
}
