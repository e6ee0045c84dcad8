//! What a client's frames do: CONNECT (options and authentication), PUB/HPUB, SUB, UNSUB,
//! PING/PONG, and the wire reaction to each parse failure.
//!
//! `process` is the entry point: the loop hands it bytes read from a client (`input.rs`), it
//! runs the parser over them frame by frame and returns how many bytes were used; the caller
//! keeps the rest (a frame split by the read). Replies are queued on the connection; delivery of
//! published messages is in `deliver.rs`, authentication in `auth.rs`.

use super::auth::Login;
use super::broker::Broker;
use super::deliver::Run;
use crate::config::FIRST_PING_INTERVAL;
use crate::conn::{ClientOpts, CloseReason, Credentials, Kind};
use crate::protocol::json::{self, JsonError, Value};
use crate::protocol::parser::{self, Failure, Limits, Msg, Op, Parsed, Peer};
use crate::protocol::wire;
use crate::subject::perms::reserved_reply;
use crate::subject::sublist::Sub;
use crate::subject::valid_literal_subject;
use crate::util::logger;
use log::{debug, error, trace};
use mio::net::TcpStream;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

impl Broker {
    /// Takes in a newly accepted client: registers it, sends INFO, arms its timers, and
    /// refuses it (after INFO, as nats-server does) past max_connections.
    pub fn add_client(&mut self, sock: TcpStream, addr: SocketAddr) -> Option<usize> {
        let now = self.conns.now;
        let t = match self.conns.add(sock, addr, Kind::Client) {
            Ok(t) => t,
            Err(e) => {
                error!("Error registering client connection: {e}");
                return None;
            }
        };
        self.stats.total_connections += 1;
        let c = &mut self.conns[t];
        // As nats-server: until CONNECT only the full ping interval runs (a client that
        // never sends CONNECT still goes stale); the short first PING is armed at CONNECT, so
        // a client whose CONNECT+PING comes seconds after INFO reads its PONG first.
        c.next_ping = now + self.cfg.ping_interval;
        c.auth_deadline = self
            .cfg
            .auth
            .required()
            .then(|| now + self.cfg.auth_timeout());
        debug!("{} - Client connection created", c.label());
        let (cid, addr) = (c.cid, c.addr);
        let info = self.client_info(cid, addr);
        self.conns.queue(t, info.as_bytes());
        if self.conns.clients > self.cfg.max_connections {
            self.conns.log_error(t, "maximum connections exceeded");
            self.conns
                .send_err(t, wire::ERR_MAX_CONNECTIONS, CloseReason::MaxConnections);
        }
        self.conns.schedule(t);
        Some(t)
    }

    /// Parses and acts on bytes from client `t`; returns how many were used. Before CONNECT,
    /// a frame is acted on only as authentication allows (`auth.rs`).
    pub fn process(&mut self, t: usize, data: &[u8]) -> usize {
        let mut run = Vec::new();
        std::mem::swap(&mut run, &mut self.scratch.run);
        let used = self.process_frames(t, data, &mut run);
        run.clear();
        self.scratch.run = run;
        used
    }

    /// `process`, gathering consecutive PUBs that differ only in their payloads into a run
    /// (`deliver::Run`) that is delivered as one before anything else is done.
    fn process_frames(&mut self, t: usize, data: &[u8], run: &mut Vec<Range<usize>>) -> usize {
        let mut first: Option<Msg> = None;
        let mut pos = 0;
        while pos < data.len() {
            if self.conns[t].closing.is_some() || !self.may_act_before_connect(t, data[pos]) {
                return data.len();
            }
            let lim = Limits {
                peer: Peer::Client,
                max_control_line: self.cfg.max_control_line,
                max_payload: self.cfg.max_payload,
                headers: self.conns[t].opts.headers,
            };
            match parser::parse(&data[pos..], &lim) {
                Parsed::Frame(op, n) => {
                    let pub_run = match &op {
                        Op::Pub(m) if m.reply.is_empty() => self.runs_allowed(t).then_some(*m),
                        _ => None,
                    };
                    // A frame that does not continue the run ends it (delivers it) first.
                    let continues = |f: Msg| pub_run.is_some_and(|m| same_run(&f, &m));
                    if first.is_some_and(|f| !continues(f)) {
                        self.end_run(t, &mut first, data, run);
                        if self.conns[t].stalled || self.conns[t].closing.is_some() {
                            // A consumer is behind: the rest waits, carried by the caller.
                            self.conns[t].need = 0;
                            break;
                        }
                    }
                    if let Some(m) = pub_run {
                        self.count_pub(t, &m);
                        let start = m.payload.as_ptr() as usize - data.as_ptr() as usize;
                        run.push(start..start + m.payload.len());
                        first.get_or_insert(m);
                        pos += n;
                        continue;
                    }
                    if logger::trace_on() {
                        self.trace_in(t, &data[pos..pos + n], &op);
                    }
                    pos += n;
                    self.client_op(t, op);
                    if self.conns[t].stalled {
                        // A consumer is behind: the rest waits, carried by the caller.
                        self.conns[t].need = 0;
                        break;
                    }
                }
                Parsed::Incomplete(need) => {
                    self.conns[t].need = need;
                    break;
                }
                Parsed::Fail(f) => {
                    self.end_run(t, &mut first, data, run);
                    self.parse_failure(t, f, &data[pos..]);
                    return data.len();
                }
            }
        }
        self.end_run(t, &mut first, data, run);
        pos
    }

    /// When the first PING goes to a client after CONNECT: soon, to measure RTT, with jitter.
    fn first_ping_at(&mut self) -> Instant {
        let d = self.cfg.ping_interval.min(FIRST_PING_INTERVAL);
        let jitter = (d.as_nanos() as u64 / 5).max(1);
        self.conns.now + d + Duration::from_nanos(self.rng.next_u64() % jitter)
    }

    /// Whether client `t`'s PUBs may be gathered into runs: only when nothing is done per
    /// message besides counting and delivering (no +OK, subject checks, permissions, trace,
    /// routes).
    fn runs_allowed(&self, t: usize) -> bool {
        let c = &self.conns[t];
        !logger::trace_on()
            && self.ident.cluster.is_none()
            && !c.opts.verbose
            && !c.opts.pedantic
            && c.perms.is_none()
    }

    /// Delivers the run gathered so far, if any.
    fn end_run(
        &mut self,
        t: usize,
        first: &mut Option<Msg>,
        data: &[u8],
        run: &mut Vec<Range<usize>>,
    ) {
        if let Some(m) = first.take() {
            self.deliver_run(
                t,
                &m,
                &Run {
                    data,
                    payloads: run,
                },
            );
            run.clear();
        }
    }

    fn client_op(&mut self, t: usize, op: Op) {
        match op {
            Op::Connect(arg) => self.on_connect(t, arg),
            Op::Pub(m) => self.on_pub(t, &m),
            Op::Sub {
                subject,
                queue,
                sid,
            } => self.on_sub(t, subject, queue, sid),
            Op::Unsub { sid, max } => self.on_unsub(t, sid, max),
            Op::Ping => {
                let now = self.conns.now;
                let c = &mut self.conns[t];
                c.last_ping_in = now;
                // Like nats-server: a client's first PING after CONNECT gets a fresh INFO
                // first if the cluster's URLs changed since it connected.
                let first = c.connected && !c.ponged;
                c.ponged |= c.connected;
                let stale = self.ident.urls_changed > c.started;
                if first && stale && c.opts.protocol >= 1 {
                    let (cid, addr) = (c.cid, c.addr);
                    let line = self.client_info(cid, addr);
                    self.conns.queue(t, line.as_bytes());
                }
                self.trace_out(t, "PONG");
                self.conns.queue(t, wire::PONG);
            }
            Op::Pong => self.conns.on_pong(t),
            Op::Ok => {}
            Op::Info(arg) => {
                // A client has no business sending INFO, but nats-server only checks it is JSON.
                if json::parse(arg).is_err() {
                    self.conns.log_error(t, "INFO parse error");
                    self.conns.close(t, CloseReason::ProtocolViolation);
                }
            }
            Op::Err(text) => {
                let text = String::from_utf8_lossy(text).into_owned();
                self.conns.log_error(t, &format!("Client Error {text}"));
                self.conns.close(t, CloseReason::ParseError);
            }
            Op::RouteSub { .. } | Op::RouteUnsub { .. } => {
                // The client parser never produces these.
                self.conns.close(t, CloseReason::ProtocolViolation);
            }
        }
    }

    pub fn parse_failure(&mut self, t: usize, f: Failure, at: &[u8]) {
        let snippet = String::from_utf8_lossy(&at[..at.len().min(32)]).into_owned();
        match f {
            Failure::UnknownOp => {
                let who = if self.conns[t].is_client() {
                    "Client"
                } else {
                    "Router"
                };
                self.conns
                    .log_error(t, &format!("{who} parser ERROR, proto='{snippet:?}...'"));
                self.conns
                    .send_err(t, wire::ERR_UNKNOWN_OP, CloseReason::ProtocolViolation);
            }
            Failure::MaxControlLine => {
                self.conns.log_error(
                    t,
                    &format!("{} (snip: {snippet:?}...)", wire::ERR_MAX_CONTROL_LINE.text),
                );
                self.conns
                    .send_err(t, wire::ERR_MAX_CONTROL_LINE, CloseReason::MaxControlLine);
            }
            Failure::MaxPayload => {
                self.conns.log_error(
                    t,
                    &format!(
                        "maximum payload exceeded (max_payload {})",
                        self.cfg.max_payload
                    ),
                );
                self.conns
                    .send_err(t, wire::ERR_MAX_PAYLOAD, CloseReason::MaxPayload);
            }
            Failure::BadArgs(what) => {
                self.conns.log_error(t, &format!("{what}: {snippet:?}"));
                self.conns.close(t, CloseReason::ProtocolViolation);
            }
        }
    }

    fn on_connect(&mut self, t: usize, arg: &[u8]) {
        // `null` unmarshals to nothing in Go: a CONNECT that changes no option.
        let parsed = json::parse(arg).and_then(|v| match v {
            Value::Obj(_) | Value::Null => Ok(v),
            _ => Err(JsonError("CONNECT is not a JSON object".into())),
        });
        // Like Go's json.Unmarshal into the same struct: fields a later CONNECT leaves out
        // keep the values an earlier one set.
        let mut opts = self.conns[t].opts.clone();
        let mut creds = self.conns[t].creds.as_deref().cloned().unwrap_or_default();
        let applied = parsed.and_then(|v| {
            apply_connect(&v, &mut opts, &mut creds)?;
            Ok(v)
        });
        if let Err(e) = applied {
            self.conns
                .log_error(t, &format!("CONNECT parse error: {}", e.0));
            self.conns.close(t, CloseReason::ProtocolViolation);
            return;
        }
        // Naming an account in CONNECT is refused, as in nats-server without JWTs.
        let user = match self.authenticate(&creds) {
            Login::Open if creds.account.is_empty() => None,
            Login::User(i) if creds.account.is_empty() => Some(i),
            _ => {
                self.auth_violation(t);
                return;
            }
        };
        if !(0..=1).contains(&opts.protocol) {
            self.conns
                .send_err(t, wire::ERR_BAD_PROTOCOL, CloseReason::BadClientProtocol);
            return;
        }
        if opts.no_responders && !opts.headers {
            self.conns.send_err(
                t,
                wire::ERR_NO_RESPONDERS_HEADERS,
                CloseReason::NoRespondersHeaders,
            );
            return;
        }
        if !self.bind_user(t, user) {
            self.auth_violation(t);
            return;
        }
        let verbose = opts.verbose;
        let next_ping = self.first_ping_at();
        let now = self.conns.now;
        let c = &mut self.conns[t];
        opts.user = std::mem::take(&mut c.opts.user);
        c.opts = opts;
        c.creds = (creds != Credentials::default()).then(|| Box::new(creds));
        c.connected = true;
        c.auth_deadline = None;
        c.rtt = now.saturating_duration_since(c.started);
        c.next_ping = next_ping;
        c.last_activity = now;
        if verbose {
            self.trace_out(t, "OK");
            self.conns.queue(t, wire::OK);
        }
        self.conns.schedule(t);
    }

    /// A client's published message, counted.
    fn count_pub(&mut self, t: usize, m: &Msg) {
        let now = self.conns.now;
        let c = &mut self.conns[t];
        c.counters.in_msgs += 1;
        c.counters.in_bytes += m.payload.len() as u64;
        c.last_activity = now;
        self.stats.in_msgs += 1;
        self.stats.in_bytes += m.payload.len() as u64;
    }

    fn on_pub(&mut self, t: usize, m: &Msg) {
        let now = self.conns.now;
        self.count_pub(t, m);
        let c = &self.conns[t];
        let (pedantic, verbose, no_responders) =
            (c.opts.pedantic, c.opts.verbose, c.opts.no_responders);
        // An empty subject only comes from a client's HMSG, which nats-server does not check.
        if pedantic && !m.subject.is_empty() && !valid_literal_subject(m.subject) {
            self.conns.send_err(
                t,
                wire::ERR_INVALID_PUB_SUBJECT,
                CloseReason::ProtocolViolation,
            );
        }
        let c = &mut self.conns[t];
        if let Some(p) = &mut c.perms {
            if !p.can_publish(m.subject, now) {
                self.violation(t, "Publish to", m.subject, None);
                return;
            }
        }
        if !m.reply.is_empty() && reserved_reply(m.reply) {
            self.violation(t, "Publish with Reply of", m.reply, None);
            return;
        }
        if verbose {
            self.trace_out(t, "OK");
            self.conns.queue(t, wire::OK);
        }
        let delivered = self.deliver(t, m);
        if !delivered && no_responders && !m.reply.is_empty() {
            self.no_responders(t, m.reply);
        }
    }

    /// `-ERR 'Permissions Violation for <what> "<subject>"'` (the connection stays).
    fn violation(&mut self, t: usize, what: &str, subject: &[u8], queue: Option<&[u8]>) {
        let mut text = format!(
            "Permissions Violation for {what} {}",
            wire::go_quote(subject)
        );
        if let Some(q) = queue {
            text.push_str(&format!(" using queue {}", wire::go_quote(q)));
        }
        let user = self.conns[t].opts.user.clone();
        self.conns.log_error(
            t,
            &format!("{text} - User {}", wire::go_quote(user.as_bytes())),
        );
        self.conns.send_err_text(t, &text);
    }

    /// Tells a requester nobody is listening: a 503 status on its own reply subscription.
    fn no_responders(&mut self, t: usize, reply: &[u8]) {
        let sublist = &mut self.accounts[self.conns[t].account].sublist;
        let Some(matches) = sublist.lookup(reply) else {
            return;
        };
        let Some(sub) = matches
            .plain
            .iter()
            .filter_map(|&id| sublist.get(id))
            .find(|s| s.conn == t)
        else {
            return;
        };
        let c = &mut self.conns[t];
        wire::write_no_responders(&mut c.out, reply, &sub.sid);
        self.conns.after_queue(t);
    }

    fn on_sub(&mut self, t: usize, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
        let (max_subs, now) = (self.cfg.max_subs, self.conns.now);
        let c = &mut self.conns[t];
        c.last_activity = now;
        let verbose = c.opts.verbose;
        // nats-server reserves the queue name `_sys_`, with or without permissions.
        let allowed = c
            .perms
            .as_ref()
            .is_none_or(|p| p.can_subscribe(subject, queue));
        if !allowed || queue == Some(b"_sys_") {
            self.violation(t, "Subscription to", subject, queue);
            return;
        }
        if max_subs > 0 && c.subs.len() >= max_subs {
            self.conns.log_error(t, wire::ERR_MAX_SUBS.text);
            self.conns
                .send_err(t, wire::ERR_MAX_SUBS, CloseReason::ProtocolViolation);
            return;
        }
        // A sid already in use is acknowledged and otherwise ignored, as nats-server does.
        if !c.subs.contains_key(sid) {
            match self.accounts[c.account]
                .sublist
                .insert(Sub::new(t, subject, queue, sid))
            {
                Ok(id) => {
                    let acc = self.conns[t].account;
                    self.conns[t].subs.insert(sid.into(), id);
                    self.interest_changed(acc, subject, queue, 1);
                }
                Err(_) => {
                    self.conns.send_err(
                        t,
                        wire::ERR_INVALID_SUBJECT,
                        CloseReason::ProtocolViolation,
                    );
                    return;
                }
            }
        }
        if verbose {
            self.trace_out(t, "OK");
            self.conns.queue(t, wire::OK);
        }
    }

    fn on_unsub(&mut self, t: usize, sid: &[u8], max: i64) {
        let now = self.conns.now;
        let c = &mut self.conns[t];
        c.last_activity = now;
        let verbose = c.opts.verbose;
        if let Some(&id) = c.subs.get(sid) {
            match self.accounts[c.account].sublist.get_mut(id) {
                Some(sub) if max > 0 && max as u64 > sub.delivered => sub.max = max as u64,
                _ => self.remove_sub(t, id),
            }
        }
        if verbose {
            self.trace_out(t, "OK");
            self.conns.queue(t, wire::OK);
        }
    }

    pub fn trace_in(&self, t: usize, frame: &[u8], op: &Op) {
        let line_end = memchr::memchr(b'\n', frame).unwrap_or(frame.len());
        let line = String::from_utf8_lossy(&frame[..line_end]);
        let label = self.conns[t].label();
        trace!("{} - <<- [{}]", label, line.trim_end());
        if let Op::Pub(m) = op {
            trace!(
                "{} - <<- MSG_PAYLOAD: [{:?}]",
                label,
                String::from_utf8_lossy(m.payload)
            );
        }
    }

    pub fn trace_out(&self, t: usize, what: &str) {
        if logger::trace_on() {
            trace!("{} - ->> [{}]", self.conns[t].label(), what);
        }
    }
}

/// Applies CONNECT's fields onto `o`; a field of the wrong type fails the whole CONNECT, as
/// Go's json.Unmarshal does for nats-server. Absent fields keep their current value.
fn apply_connect(v: &Value, o: &mut ClientOpts, creds: &mut Credentials) -> Result<(), JsonError> {
    let flags: [(&str, &mut bool); 5] = [
        ("verbose", &mut o.verbose),
        ("pedantic", &mut o.pedantic),
        ("echo", &mut o.echo),
        ("headers", &mut o.headers),
        ("no_responders", &mut o.no_responders),
    ];
    for (key, field) in flags {
        if let Some(b) = v.get_bool(key)? {
            *field = b;
        }
    }
    v.get_bool("tls_required")?;
    if let Some(p) = v.get_int("protocol")? {
        o.protocol = p;
    }
    let texts: [(&str, &mut String); 7] = [
        ("name", &mut o.name),
        ("lang", &mut o.lang),
        ("version", &mut o.version),
        ("user", &mut creds.user),
        ("pass", &mut creds.pass),
        ("auth_token", &mut creds.token),
        ("account", &mut creds.account),
    ];
    for (key, field) in texts {
        if let Some(s) = v.get_str(key)? {
            *field = s.to_string();
        }
    }
    for key in ["jwt", "nkey", "sig"] {
        v.get_str(key)?;
    }
    Ok(())
}

/// Whether `m` may join a run that started with `first`: the same MSG line (subject, sizes;
/// runs have no reply), so only the payload differs.
fn same_run(first: &Msg, m: &Msg) -> bool {
    first.subject == m.subject && first.size == m.size && first.hdr_size == m.hdr_size
}
