//! The consumer engine's figures (not assertions):
//! `cargo test --release --lib consumer::tests_bench -- --ignored --nocapture`.
//! 128-byte messages in a file stream; CPU time of the thread (user + system), which
//! includes the store's reads and the consumer log's writes, but not the broker's work of
//! writing deliveries to sockets. `CONSUMER_BENCH_N` sets the messages (default 200 000) and
//! `CONSUMER_BENCH_BIG` the stream for the time-to-first-delivery figure (default 10 M).

use super::tests::{H, SEC};

fn cpu_ns() -> u128 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
}

fn env_n(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const FILE: &str = r#"{"name":"S","subjects":["s.>"]}"#;

fn fill(h: &mut H, n: u64, size: usize) {
    let data = vec![0x5au8; size];
    for i in 0..n {
        h.publish("s.x", &data);
        if i % 100 == 99 {
            for s in h.acc.streams.values_mut() {
                s.store.flush().unwrap();
            }
        }
    }
    for s in h.acc.streams.values_mut() {
        s.store.flush().unwrap();
    }
}

/// Runs `round` five times; prints the fastest and the median (the machine is shared).
fn rounds(what: &str, n: u64, mut round: impl FnMut(usize) -> u128) {
    let mut v: Vec<u128> = (0..5)
        .map(&mut round)
        .map(|ns| ns / u128::from(n))
        .collect();
    v.sort_unstable();
    println!(
        "{what}: {n} msgs, {} ns CPU per message (fastest of 5), median {}",
        v[0], v[2]
    );
}

#[test]
#[ignore]
fn bench_pull_explicit_ack_batches_of_100() {
    let n = env_n("CONSUMER_BENCH_N", 200_000);
    let mut h = H::new("bench-pull", FILE);
    fill(&mut h, n, 128);
    rounds("pull + explicit ack, batches of 100", n, |i| {
        let subj = format!("$JS.API.CONSUMER.CREATE.S.C{i}");
        let body = format!(
            r#"{{"stream_name":"S","config":{{"durable_name":"C{i}","ack_policy":"explicit"}}}}"#
        );
        h.req(&subj, &body);
        let next = format!("$JS.API.CONSUMER.MSG.NEXT.S.C{i}");
        let cpu0 = cpu_ns();
        let mut got = 0u64;
        while got < n {
            h.req_reply(&next, "_INBOX.b", r#"{"batch":100}"#);
            let outs = h.poll();
            for o in &outs {
                h.ack(&o.reply, "");
            }
            got += outs.len() as u64;
            h.now += 1000;
            // The pass's end: stream and consumer state written.
            h.poll();
        }
        let ns = cpu_ns() - cpu0;
        assert_eq!(
            super::tests::num(&h.info(&format!("C{i}")), "num_ack_pending"),
            0
        );
        ns
    });
}

#[test]
#[ignore]
fn bench_push_no_ack() {
    let n = env_n("CONSUMER_BENCH_N", 200_000);
    let mut h = H::new("bench-push", FILE);
    fill(&mut h, n, 128);
    rounds("push, no acks", n, |i| {
        let d = format!("d{i}");
        h.sub(&d);
        let body = format!(
            r#"{{"stream_name":"S","config":{{"deliver_subject":"{d}","ack_policy":"none"}}}}"#
        );
        h.req("$JS.API.CONSUMER.CREATE.S", &body);
        let cpu0 = cpu_ns();
        let mut got = 0u64;
        while got < n {
            got += h.poll().len() as u64;
        }
        let ns = cpu_ns() - cpu0;
        h.subs.retain(|s| s != &d);
        // Without interest the consumer stops; the next round starts another.
        h.poll();
        ns
    });
}

#[test]
#[ignore]
fn bench_first_delivery_on_a_big_stream() {
    let n = env_n("CONSUMER_BENCH_BIG", 10_000_000);
    let mut h = H::new("bench-big", FILE);
    let t = std::time::Instant::now();
    fill(&mut h, n, 16);
    println!("{n} messages stored in {:?}", t.elapsed());
    h.sub("d");
    for (name, cfg) in [
        ("all", r#""deliver_policy":"all""#),
        (
            "all, filtered",
            r#""deliver_policy":"all","filter_subject":"s.x""#,
        ),
        (
            "all, wildcard filter",
            r#""deliver_policy":"all","filter_subject":"s.*""#,
        ),
        (
            "last per subject",
            r#""deliver_policy":"last_per_subject","filter_subject":"s.>""#,
        ),
        (
            "by start sequence",
            r#""deliver_policy":"by_start_sequence","opt_start_seq":5000000"#,
        ),
        ("new", r#""deliver_policy":"new""#),
    ] {
        let body = format!(
            r#"{{"stream_name":"S","config":{{"durable_name":"B","deliver_subject":"d","ack_policy":"explicit",{cfg}}}}}"#
        );
        let t = std::time::Instant::now();
        let (j, _) = h.req("$JS.API.CONSUMER.CREATE.S.B", &body);
        assert!(j.contains("\"num_pending\""), "{j}");
        if name == "new" {
            h.publish("s.x", b"new");
        }
        let first = h.poll();
        let took = t.elapsed();
        assert!(!first.is_empty());
        println!(
            "{name}: created and first delivery in {took:?} ({} in the first pass)",
            first.len()
        );
        h.req("$JS.API.CONSUMER.DELETE.S.B", "");
        h.now += SEC;
    }
}
