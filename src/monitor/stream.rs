//! Response bodies produced a slice at a time.
//!
//! A /connz of thousands of connections or a /subsz list is megabytes of JSON: rendered in
//! one go it would hold up every client for the whole time. Instead the endpoint takes what
//! it needs to decide the page (sort keys, the entries' identities) when the request comes,
//! and a `Stream` renders the entries later, a few per loop pass and only as fast as the
//! monitoring socket drains (`monitor::source`). The compact JSON of each part goes through
//! `Pretty`, whose state crosses parts, so the bytes are those of the one-go rendering.
//! /metrics (text, not JSON) goes out as its parts are.

use super::pretty::Pretty;
use super::{connz, jsmetrics, jsz, subsz};
use crate::core::broker::Broker;
use crate::jetstream::source::JetStream;

/// What an endpoint renders part by part: its first part is the document's head, then one
/// entry per part; `next` returns false with the last part.
pub enum Source {
    Connz(connz::Cursor),
    Subsz(subsz::Cursor),
    Jsz(Box<jsz::Cursor>),
    Metrics(Box<jsmetrics::Cursor>),
}

impl Source {
    fn next(&mut self, b: &Broker, js: Option<&mut JetStream>, out: &mut String) -> bool {
        match self {
            Source::Connz(c) => c.next(b, out),
            Source::Subsz(c) => c.next(b, out),
            Source::Jsz(c) => c.next(js, out),
            Source::Metrics(c) => c.next(js, out),
        }
    }
}

pub struct Stream {
    pub content_type: &'static str,
    source: Source,
    /// None: the parts are not JSON and go out as they are.
    pretty: Option<Pretty>,
    /// JSONP: `callback(` before the body and `)` after it.
    callback: Option<String>,
    started: bool,
    done: bool,
    /// The current part's compact JSON (kept for its capacity).
    compact: String,
    /// Every part's compact JSON, for tests to indent in one go.
    #[cfg(test)]
    log: String,
}

impl Stream {
    pub fn new(source: Source) -> Stream {
        Stream {
            content_type: "application/json",
            source,
            pretty: Some(Pretty::new()),
            callback: None,
            started: false,
            done: false,
            compact: String::new(),
            #[cfg(test)]
            log: String::new(),
        }
    }

    /// A body of text parts (not JSON), sent as `content_type`.
    pub fn text(source: Source, content_type: &'static str) -> Stream {
        Stream {
            content_type,
            pretty: None,
            ..Stream::new(source)
        }
    }

    /// Wraps the body in `callback(...)` (JSONP), as nats-server does for `?callback=`
    /// (JSON bodies only).
    pub fn jsonp(&mut self, callback: &str) {
        if self.pretty.is_some() {
            self.callback = Some(callback.to_string());
            self.content_type = "application/javascript";
        }
    }

    /// Appends parts to `out` until about `budget` bytes were added (at least one part);
    /// true once the body is complete. `js`: the JetStream source, for the bodies that show
    /// it.
    pub fn produce(
        &mut self,
        b: &Broker,
        mut js: Option<&mut JetStream>,
        out: &mut Vec<u8>,
        budget: usize,
    ) -> bool {
        let start = out.len();
        if !self.started {
            self.started = true;
            if let Some(cb) = &self.callback {
                out.extend_from_slice(cb.as_bytes());
                out.push(b'(');
            }
        }
        while !self.done && (out.len() == start || out.len() - start < budget) {
            self.compact.clear();
            let more = self.source.next(b, js.as_deref_mut(), &mut self.compact);
            #[cfg(test)]
            self.log.push_str(&self.compact);
            match &mut self.pretty {
                Some(p) => p.feed(self.compact.as_bytes(), out),
                None => out.extend_from_slice(self.compact.as_bytes()),
            }
            if !more {
                if let Some(p) = &mut self.pretty {
                    p.finish(out);
                }
                if self.callback.is_some() {
                    out.push(b')');
                }
                self.done = true;
            }
        }
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::core::testing::World;
    use crate::monitor::http::{parse, Parsed};
    use crate::monitor::{pretty::pretty, respond, Monitor, Reply};

    /// A broker with `n` client connections that sent CONNECT and subscribed.
    fn broker_with_clients(n: usize) -> World {
        let mut w = World::new(Config::default());
        for i in 0..n {
            let t = w.client();
            let frames = format!(
                "CONNECT {{\"name\":\"c{i}\",\"lang\":\"\\\"<&>{{[\"}}\r\nSUB a.{i} q {i}\r\nSUB b 1{i}\r\n"
            );
            w.send(t, frames.as_bytes());
        }
        w
    }

    fn stream(b: &Broker, target: &str) -> Stream {
        let text = format!("GET {target} HTTP/1.1\r\n\r\n");
        let Parsed::Request(req, _) = parse(text.as_bytes()) else {
            panic!("{target}")
        };
        match respond(&mut Monitor::new(), b, None, &req) {
            Reply::Stream(s) => s,
            Reply::Done(r) => panic!("{target}: not a stream: {}", r.body),
        }
    }

    /// A body rendered a part per slice (the strings hold quotes and brackets) has the bytes of its compact JSON indented in one go
    /// (what the endpoints answered before they were sliced).
    #[test]
    fn slices_have_the_bytes_of_one_go() {
        let w = broker_with_clients(30);
        let b = &w.b;
        for target in [
            "/connz?subs=detail&limit=100",
            "/connz?subs=1&sort=subs",
            "/connz?offset=1000",
            "/connz?cid=3&callback=cb",
            "/subsz?subs=1&limit=45",
            "/subsz?subs=1&callback=cb",
        ] {
            let mut s = stream(b, target);
            let mut sliced = Vec::new();
            while !s.produce(b, None, &mut sliced, 1) {}
            let whole = match target.split_once("callback=") {
                Some((_, cb)) => format!("{cb}({})", pretty(&s.log)),
                None => pretty(&s.log),
            };
            if target.contains("connz?subs") {
                assert!(whole.contains("\"name\": \"c29\""), "{target}: {whole}");
            }
            assert_eq!(String::from_utf8(sliced).unwrap(), whole, "{target}");
        }
    }

    /// A slice renders about the budget: one part at least, never the whole of a big page.
    #[test]
    fn a_slice_is_bounded() {
        let w = broker_with_clients(60);
        let b = &w.b;
        let mut s = stream(b, "/connz?subs=detail");
        let mut out = Vec::new();
        assert!(!s.produce(b, None, &mut out, 1000));
        let first = out.len();
        assert!((1000..3000).contains(&first), "{first}");
        while !s.produce(b, None, &mut out, 1000) {}
        assert!(out.len() > 20 * first, "{} vs {first}", out.len());
    }
}
