//! A consumer's state recovered from any files (persist.rs: `meta.inf`, `snap.<gen>`,
//! `log.<gen>`): the restart never panics, the consumer then delivers and takes acks, and
//! once its state is flushed a second restart brings back exactly that state.
//!
//! Each run creates a file stream `S` with ten messages and a durable consumer `C`, stops,
//! replaces (or, with flag bit 3, adds to) the consumer's files with the input's, and
//! restarts. Input: a flags byte, then files, each `tag u8, len u16 LE, bytes`; tag & 3: 0
//! a snapshot, 1 a log, 2 `meta.inf`; tag >> 2 its generation (0..=61; 62: u64::MAX; 63:
//! 2^40). Flags: bit 0 fixes the CRCs (a snapshot's, each log record's, found by its
//! length field) so that mutations reach what lies behind them; bits 1-2 the consumer's
//! ack policy (explicit, all, none, explicit with max_deliver 2); bit 3 keeps the
//! consumer's own files.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tern::jetstream::account::{JsLimits, Env, JsAccount, ServerJs};
use tern::jetstream::api::{self, Request};
use tern::jetstream::consumer::state::{Pending, State};
use tern::jetstream::consumer::{Budget, Out};
use tern::jetstream::publish::Inbound;
use tern::jetstream::store::crc::crc32c;

fn any(_: &str) -> bool {
    true
}

struct World {
    dir: PathBuf,
    acc: JsAccount,
    now: SystemTime,
}

type Saved = (
    u64,
    u64,
    u64,
    u64,
    BTreeMap<u64, Pending>,
    HashMap<u64, u64>,
);

fn saved(s: &State) -> Saved {
    (
        s.sseq,
        s.dseq,
        s.adflr,
        s.asflr,
        s.pending.clone(),
        s.rdc.clone(),
    )
}

impl World {
    fn env(&self) -> Env<'static> {
        Env {
            now: self.now,
            server: ServerJs::sum([&self.acc], 1 << 40, 1 << 40, 0),
            domain: None,
            interest: &any,
        }
    }

    fn now_ns(&self) -> i64 {
        tern::jetstream::account::to_ns(self.now)
    }

    fn request(&mut self, subject: &str, body: &str) {
        let env = self.env();
        let req = Request {
            subject,
            reply: b"_INBOX.x",
            payload: body.as_bytes(),
        };
        let _ = api::handle(&mut self.acc, &env, &req);
    }

    fn publish(&mut self, n: u8) {
        let env = self.env();
        let subject = format!("s.{}", n % 3);
        let data = [n; 5];
        let msg = Inbound {
            subject: &subject,
            hdr: b"",
            data: &data,
            has_reply: true,
        };
        let _ = self.acc.publish(&env, "S", &msg);
    }

    /// The end of a pass: flush, poll, flush the consumers. Returns the deliveries' replies.
    fn pass(&mut self) -> Vec<String> {
        self.flush();
        let mut outs: Vec<Out> = Vec::new();
        let now = self.now_ns();
        self.acc
            .poll(now, &Budget::default(), &any, &any, &mut outs);
        self.flush();
        let _ = self.acc.flush_consumers();
        outs.into_iter()
            .filter(|o| o.seq > 0)
            .map(|o| o.reply)
            .collect()
    }

    fn flush(&mut self) {
        for s in self.acc.streams.values_mut() {
            s.store.flush().expect("flush");
        }
    }

    fn restart(&mut self) {
        self.acc = JsAccount::new(&self.dir, "$G", JsLimits::default());
        self.acc = JsAccount::open(&self.dir, "$G", JsLimits::default(), None);
        for (s, c, _, _) in self.acc.deliver_subjects() {
            let now = self.now_ns();
            self.acc.set_interest(&s, &c, true, now);
        }
    }

    fn states(&self) -> Vec<(String, Saved)> {
        self.acc
            .streams
            .values()
            .flat_map(|s| s.consumers.values())
            .map(|c| (c.name.clone(), saved(&c.state)))
            .collect()
    }
}

fn setup(dir: PathBuf, flags: u8) -> World {
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = World {
        acc: JsAccount::new(&dir, "$G", JsLimits::default()),
        dir,
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    };
    w.request(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.>"],"storage":"file"}"#,
    );
    for n in 0..10 {
        w.publish(n);
    }
    let policy = ["explicit", "all", "none", "explicit"][usize::from((flags >> 1) & 3)];
    let max_deliver = if (flags >> 1) & 3 == 3 { 2 } else { -1 };
    w.request(
        "$JS.API.CONSUMER.DURABLE.CREATE.S.C",
        &format!(
            r#"{{"stream_name":"S","config":{{"durable_name":"C","ack_policy":"{policy}","ack_wait":1000000000,"max_deliver":{max_deliver}}}}}"#
        ),
    );
    // Some history in the consumer's own files: deliveries and an ack.
    let replies = w.pass();
    if let Some(r) = replies.first() {
        let now = w.now_ns();
        w.acc.ack(r.as_bytes(), "", b"+ACK", now, &any);
    }
    w.pass();
    w
}

fn fix_snapshot(b: &mut [u8]) {
    if b.len() >= 8 {
        let end = b.len() - 4;
        let crc = crc32c(&b[..end]);
        b[end..].copy_from_slice(&crc.to_le_bytes());
    }
}

fn fix_log(b: &mut [u8]) {
    let mut pos = 0;
    while pos + 7 <= b.len() {
        let len = usize::from(u16::from_le_bytes([b[pos], b[pos + 1]]));
        if len < 7 || len > b.len() - pos {
            return;
        }
        let crc = crc32c(&b[pos..pos + len - 4]);
        b[pos + len - 4..pos + len].copy_from_slice(&crc.to_le_bytes());
        pos += len;
    }
}

fn generation(tag: u8) -> u64 {
    match tag >> 2 {
        62 => u64::MAX,
        63 => 1 << 40,
        n => u64::from(n),
    }
}

/// Writes the input's files into the consumer's directory.
fn plant(cdir: &Path, mut data: &[u8], flags: u8) {
    if flags & 8 == 0 {
        for e in std::fs::read_dir(cdir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("snap.") || name.starts_with("log.") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    while data.len() >= 3 {
        let (tag, len) = (data[0], usize::from(u16::from_le_bytes([data[1], data[2]])));
        let body = &data[3..];
        let mut bytes = body[..len.min(body.len())].to_vec();
        data = &body[bytes.len()..];
        let gen = generation(tag);
        let name = match tag & 3 {
            0 => {
                if flags & 1 != 0 {
                    fix_snapshot(&mut bytes);
                }
                format!("snap.{gen}")
            }
            1 => {
                if flags & 1 != 0 {
                    fix_log(&mut bytes);
                }
                format!("log.{gen}")
            }
            2 => "meta.inf".to_string(),
            _ => continue,
        };
        std::fs::write(cdir.join(name), &bytes).expect("write");
    }
}

/// After the recovery: deliveries, acks of several kinds, redeliveries, new messages.
fn drive(w: &mut World) {
    for round in 0..3u8 {
        let replies = w.pass();
        let now = w.now_ns();
        for (i, r) in replies.iter().enumerate() {
            let payload: &[u8] = match (i + usize::from(round)) % 4 {
                0 => b"+ACK",
                1 => b"-NAK",
                2 => b"+WPI",
                _ => b"",
            };
            let _ = w.acc.ack(r.as_bytes(), "_INBOX.a", payload, now, &any);
        }
        w.publish(round);
        w.now += Duration::from_secs(2);
    }
    w.pass();
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("tern-fuzz-cstate-{}", std::process::id()));
    let mut w = setup(dir.clone(), flags);
    let cdir = dir.join("jetstream/$G/streams/S/obs/C");
    plant(&cdir, rest, flags);
    w.restart();
    drive(&mut w);
    let before = w.states();
    w.restart();
    let after = w.states();
    assert_eq!(before, after, "the flushed state did not come back");
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
});
