//! JetStream's series in `/metrics`, named and labelled as prometheus-nats-exporter's jsz
//! collector (v0.11, the exporter of nats-server 2.9) names them, so dashboards built on
//! the exporter read tern's own endpoint unchanged:
//! - `jetstream_server_*`: disabled, totals of streams, consumers, messages and bytes, and
//!   the maxima;
//! - `jetstream_stream_*`: per stream, messages, bytes, first and last sequence, consumers;
//! - `jetstream_consumer_*`: per consumer, the delivered and ack-floor sequences, and the
//!   pending, ack-pending, redelivered and waiting counts.
//!
//! Labels are the exporter's, in the order its client library writes them (sorted), with
//! the values it gives a standalone server: no meta group (`cluster`, `meta_leader` empty,
//! `is_meta_leader` true), streams led by this server. The server series are rendered with
//! the request; the stream and consumer series a sample per part (`stream.rs`), as /jsz.

use super::jsz::{consumer_after, stream_after};
use crate::core::broker::Broker;
use crate::jetstream::account::to_ns;
use crate::jetstream::report::ConsumerFigures;
use crate::jetstream::source::JetStream;
use std::fmt::Write as _;
use std::time::SystemTime;

/// Name and help of each series, in the exporter's words.
const SERVER: [(&str, &str); 7] = [
    (
        "jetstream_server_jetstream_disabled",
        "JetStream disabled or not",
    ),
    (
        "jetstream_server_total_streams",
        "Total number of streams in JetStream",
    ),
    (
        "jetstream_server_total_consumers",
        "Total number of consumers in JetStream",
    ),
    (
        "jetstream_server_total_messages",
        "Total number of stored messages in JetStream",
    ),
    (
        "jetstream_server_total_message_bytes",
        "Total number of bytes stored in JetStream",
    ),
    ("jetstream_server_max_memory", "JetStream Max Memory"),
    ("jetstream_server_max_storage", "JetStream Max Storage"),
];

const STREAM: [(&str, &str); 5] = [
    (
        "jetstream_stream_total_messages",
        "Total number of messages from a stream",
    ),
    (
        "jetstream_stream_total_bytes",
        "Total stored bytes from a stream",
    ),
    ("jetstream_stream_first_seq", "First sequence from a stream"),
    ("jetstream_stream_last_seq", "Last sequence from a stream"),
    (
        "jetstream_stream_consumer_count",
        "Total number of consumers from a stream",
    ),
];

const CONSUMER: [(&str, &str); 8] = [
    (
        "jetstream_consumer_delivered_consumer_seq",
        "Latest sequence number of a stream consumer",
    ),
    (
        "jetstream_consumer_delivered_stream_seq",
        "Latest sequence number of a stream",
    ),
    (
        "jetstream_consumer_num_ack_pending",
        "Number of pending acks from a consumer",
    ),
    (
        "jetstream_consumer_num_redelivered",
        "Number of redelivered messages from a consumer",
    ),
    (
        "jetstream_consumer_num_waiting",
        "Number of inflight fetch requests from a pull consumer",
    ),
    (
        "jetstream_consumer_num_pending",
        "Number of pending messages from a consumer",
    ),
    (
        "jetstream_consumer_ack_floor_stream_seq",
        "Number of ack floor stream seq from a consumer",
    ),
    (
        "jetstream_consumer_ack_floor_consumer_seq",
        "Number of ack floor consumer seq from a consumer",
    ),
];

/// A consumer's value in series `i` of `CONSUMER`.
fn consumer_value(f: &ConsumerFigures, i: usize) -> u64 {
    match i {
        0 => f.delivered_consumer_seq,
        1 => f.delivered_stream_seq,
        2 => f.num_ack_pending,
        3 => f.num_redelivered,
        4 => f.num_waiting,
        5 => f.num_pending,
        6 => f.ack_floor_stream_seq,
        _ => f.ack_floor_consumer_seq,
    }
}

/// A label value escaped as the text format wants (`\`, `"`, newline).
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn family_head(out: &mut String, name: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n");
}

/// The server's labels, escaped: (domain, server_id, server_name).
struct Server {
    domain: String,
    id: String,
    name: String,
}

impl Server {
    /// The stream labels before `server_id`, then the rest, around the given values.
    fn stream_labels(&self, acc: &str, stream: &str) -> String {
        let (acc, stream) = (escape(acc), escape(stream));
        format!(
            "account=\"{acc}\",account_id=\"{acc}\",cluster=\"\",domain=\"{}\",\
             is_meta_leader=\"true\",is_stream_leader=\"true\",meta_leader=\"\",\
             server_id=\"{}\",server_name=\"{}\",stream_leader=\"{}\",stream_name=\"{stream}\"",
            self.domain, self.id, self.name, self.name
        )
    }

    fn consumer_labels(&self, acc: &str, stream: &str, consumer: &str, desc: &str) -> String {
        let (acc, stream) = (escape(acc), escape(stream));
        let (consumer, desc) = (escape(consumer), escape(desc));
        format!(
            "account=\"{acc}\",account_id=\"{acc}\",cluster=\"\",consumer_desc=\"{desc}\",\
             consumer_leader=\"\",consumer_name=\"{consumer}\",domain=\"{}\",\
             is_consumer_leader=\"true\",is_meta_leader=\"true\",is_stream_leader=\"true\",\
             meta_leader=\"\",server_id=\"{}\",server_name=\"{}\",stream_leader=\"{}\",\
             stream_name=\"{stream}\"",
            self.domain, self.id, self.name, self.name
        )
    }
}

/// The server series, rendered with the request (O(streams) for the totals).
fn server_series(b: &Broker, js: &JetStream, out: &mut String) -> Server {
    let set = js.settings();
    let server = Server {
        domain: escape(set.domain.unwrap_or("")),
        id: escape(&b.ident.id),
        name: escape(&b.ident.name),
    };
    let t = js.totals();
    let values = [
        0.0,
        t.streams as f64,
        t.consumers as f64,
        t.messages as f64,
        t.bytes as f64,
        set.max_memory as f64,
        set.max_store as f64,
    ];
    let labels = format!(
        "cluster=\"\",domain=\"{}\",is_meta_leader=\"true\",meta_leader=\"\",server_id=\"{}\",server_name=\"{}\"",
        server.domain, server.id, server.name
    );
    for ((name, help), v) in SERVER.iter().zip(values) {
        family_head(out, name, help);
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
    server
}

/// The last sample's place: page position of its account, its stream, its consumer.
#[derive(Default)]
struct Place {
    ai: usize,
    stream: Option<String>,
    consumer: Option<String>,
}

/// The first stream after `at` (in page then name order): (page position, name).
fn next_stream(js: &JetStream, page: &[usize], at: &Place) -> Option<(usize, String)> {
    let (mut ai, mut after) = (at.ai, at.stream.clone());
    loop {
        let acc = *page.get(ai)?;
        let found = js
            .account(acc)
            .and_then(|a| stream_after(a, after.as_deref()));
        if let Some(s) = found {
            return Some((ai, s.config.name.clone()));
        }
        ai += 1;
        after = None;
    }
}

/// The first consumer after `at`: (page position, stream, consumer).
fn next_consumer(js: &JetStream, page: &[usize], at: &Place) -> Option<(usize, String, String)> {
    let (mut ai, mut stream, mut consumer) = (at.ai, at.stream.clone(), at.consumer.clone());
    loop {
        let acc = *page.get(ai)?;
        if let Some(a) = js.account(acc) {
            if let Some(s) = stream.as_ref().and_then(|n| a.streams.get(n)) {
                if let Some(c) = consumer_after(s, consumer.as_deref()) {
                    return Some((ai, s.config.name.clone(), c.to_string()));
                }
            }
            let mut after = stream.clone();
            while let Some(s) = stream_after(a, after.as_deref()) {
                if let Some(c) = consumer_after(s, None) {
                    return Some((ai, s.config.name.clone(), c.to_string()));
                }
                after = Some(s.config.name.clone());
            }
        }
        ai += 1;
        stream = None;
        consumer = None;
    }
}

/// The JetStream series of one /metrics request, a sample per part.
pub struct Cursor {
    /// The text before the stream series (the core metrics and the server series).
    head: Option<String>,
    server: Server,
    /// JetStream accounts by broker index, in name order.
    page: Vec<usize>,
    /// The series being written: `STREAM`'s, then `CONSUMER`'s.
    series: usize,
    at: Place,
    /// The series' HELP and TYPE lines are out (written before its first sample only, as
    /// the exporter leaves out a series without samples).
    started: bool,
}

impl Cursor {
    /// `head` (the core metrics), then the server series now; the rest part by part.
    pub fn new(b: &Broker, js: &JetStream, mut head: String) -> Cursor {
        let server = server_series(b, js, &mut head);
        let mut names: Vec<(&str, usize)> =
            js.accounts().map(|(i, a)| (a.name.as_str(), i)).collect();
        names.sort_unstable();
        Cursor {
            head: Some(head),
            server,
            page: names.into_iter().map(|(_, i)| i).collect(),
            series: 0,
            at: Place::default(),
            started: false,
        }
    }

    /// Appends the next sample (with its series' head if first); false when all are out.
    pub fn next(&mut self, mut js: Option<&mut JetStream>, out: &mut String) -> bool {
        if let Some(head) = self.head.take() {
            out.push_str(&head);
            return true;
        }
        while self.series < STREAM.len() + CONSUMER.len() {
            let written = match js.as_deref_mut() {
                None => false,
                Some(js) if self.series < STREAM.len() => self.stream_sample(js, out),
                Some(js) => self.consumer_sample(js, out),
            };
            if written {
                return true;
            }
            self.series += 1;
            self.at = Place::default();
            self.started = false;
        }
        false
    }

    fn start(&mut self, out: &mut String, (name, help): (&str, &str)) {
        if !std::mem::replace(&mut self.started, true) {
            family_head(out, name, help);
        }
    }

    fn stream_sample(&mut self, js: &JetStream, out: &mut String) -> bool {
        let Some((ai, name)) = next_stream(js, &self.page, &self.at) else {
            return false;
        };
        let acc = self.page[ai];
        let Some(a) = js.account(acc) else {
            return false;
        };
        let Some(s) = a.streams.get(&name) else {
            return false;
        };
        let st = s.store.state();
        let v = match self.series {
            0 => st.msgs,
            1 => st.bytes,
            2 => st.first_seq,
            3 => st.last_seq,
            _ => s.consumers.len() as u64,
        };
        let series = STREAM[self.series];
        self.start(out, series);
        let labels = self.server.stream_labels(&a.name, &name);
        let _ = writeln!(out, "{}{{{labels}}} {}", series.0, v as f64);
        self.at = Place {
            ai,
            stream: Some(name),
            consumer: None,
        };
        true
    }

    fn consumer_sample(&mut self, js: &mut JetStream, out: &mut String) -> bool {
        let Some((ai, stream, name)) = next_consumer(js, &self.page, &self.at) else {
            return false;
        };
        let acc = self.page[ai];
        let (acc_name, desc) = {
            let a = js.account(acc);
            let c = a.and_then(|a| a.streams.get(&stream)?.consumers.get(&name));
            let desc = c.map(|c| c.config.description.clone()).unwrap_or_default();
            (a.map(|a| a.name.clone()).unwrap_or_default(), desc)
        };
        let now = to_ns(SystemTime::now());
        let Some(f) = js.consumer_figures((acc, &stream, &name), now) else {
            return false;
        };
        let i = self.series - STREAM.len();
        let series = CONSUMER[i];
        self.start(out, series);
        let labels = self
            .server
            .consumer_labels(&acc_name, &stream, &name, &desc);
        let v = consumer_value(&f, i) as f64;
        let _ = writeln!(out, "{}{{{labels}}} {v}", series.0);
        self.at = Place {
            ai,
            stream: Some(stream),
            consumer: Some(name),
        };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
        let s = Server {
            domain: String::new(),
            id: "ID".into(),
            name: "N".into(),
        };
        assert_eq!(
            s.stream_labels("A", "S"),
            "account=\"A\",account_id=\"A\",cluster=\"\",domain=\"\",is_meta_leader=\"true\",\
             is_stream_leader=\"true\",meta_leader=\"\",server_id=\"ID\",server_name=\"N\",\
             stream_leader=\"N\",stream_name=\"S\""
        );
    }
}
