//! The config-file reader and its mapping onto `Config` (what `tern -t -c file` and a SIGHUP
//! reload run), from any text: an error or a `Config`, never a panic. A `Config` that loads
//! keeps what the loop relies on: every duration fits Go's (so no `Instant + d` overflows),
//! the protocol limits fit nats-server's, and each user's permissions compile and answer.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::time::Instant;
use tern::config::Config;
use tern::config::values::{MAX_DURATION, MAX_PROTO_LIMIT};
use tern::config::{flags, keys};
use tern::subject::perms;

fuzz_target!(|data: &[u8]| {
    // A config file must be UTF-8 (the file reader refuses anything else).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut cfg = Config::default();
    // Includes resolve under a directory that does not exist: no file is ever read.
    let base = Path::new("/nonexistent/tern-fuzz");
    if keys::load_text(text, "fuzz.conf", base, &mut cfg).is_err() {
        return;
    }
    if flags::apply(&flags::Flags::default(), &mut cfg).is_err() {
        return;
    }
    let now = Instant::now();
    let mut durations = vec![
        cfg.ping_interval,
        cfg.write_deadline,
        cfg.lame_duck_duration,
        cfg.lame_duck_grace,
        cfg.auth_timeout(),
    ];
    durations.extend(cfg.cluster.as_ref().and_then(|c| c.auth_timeout));
    for p in cfg.auth.users.iter().filter_map(|u| u.permissions.as_ref()) {
        durations.extend(p.allow_responses.map(|(_, ttl)| ttl));
        let mut cp = perms::ConnPerms::new(p);
        cp.saw_reply(b"_INBOX.x", now);
        let _ = cp.can_publish(b"foo.bar", now);
        let _ = cp.can_publish(b"_INBOX.x", now);
        let _ = cp.can_subscribe(b"foo.*", Some(b"q"));
        let _ = cp.deliver_denied(b"foo.bar");
    }
    for d in durations {
        assert!(d <= MAX_DURATION && now.checked_add(d).is_some(), "{d:?}");
    }
    assert!(cfg.max_payload <= MAX_PROTO_LIMIT && cfg.max_control_line <= MAX_PROTO_LIMIT);
    assert!(cfg.max_payload <= cfg.max_pending);
});
