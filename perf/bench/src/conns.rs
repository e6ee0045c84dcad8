//! `conns`: open N idle client connections (CONNECT + PING, wait for PONG),
//! report how long the server took to accept them all, then hold them open.

use crate::proto::{self, Parser};
use crate::report::commafy;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub struct ConnsCfg {
    pub addr: SocketAddr,
    pub count: usize,
    /// Connections being set up at once.
    pub window: usize,
    /// None: hold until stdin reaches EOF.
    pub hold: Option<Duration>,
    pub pid: Option<u32>,
}

struct Pending {
    stream: TcpStream,
    parser: Parser,
    sent: bool,
}

pub fn run(cfg: ConnsCfg) -> Result<(), String> {
    let limit = proto::raise_nofile();
    if (limit as usize) < cfg.count + 64 {
        return Err(format!(
            "RLIMIT_NOFILE is {limit}, need more than {} (raise `ulimit -n`)",
            cfg.count
        ));
    }
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut events = Events::with_capacity(1024);
    let mut slots: Vec<Option<Pending>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut done: Vec<TcpStream> = Vec::with_capacity(cfg.count);
    let mut started = 0usize;
    let mut inflight = 0usize;
    let mut msg = proto::CONNECT.to_vec();
    msg.extend_from_slice(b"PING\r\n");
    let mut buf = vec![0u8; 16 * 1024];
    let cpu0 = cfg.pid.and_then(proto::proc_cpu_ns);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(120);
    while done.len() < cfg.count {
        while inflight < cfg.window && started < cfg.count {
            let mut s = TcpStream::connect(cfg.addr).map_err(|e| format!("connection #{}: connect: {e}", started + 1))?;
            let idx = free.pop().unwrap_or_else(|| {
                slots.push(None);
                slots.len() - 1
            });
            poll.registry()
                .register(&mut s, Token(idx), Interest::READABLE | Interest::WRITABLE)
                .map_err(|e| e.to_string())?;
            slots[idx] = Some(Pending { stream: s, parser: Parser::new(), sent: false });
            started += 1;
            inflight += 1;
        }
        if Instant::now() > deadline {
            return Err(format!("only {} of {} connections established after 120s", done.len(), cfg.count));
        }
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(500))) {
            if e.kind() != ErrorKind::Interrupted {
                return Err(format!("poll: {e}"));
            }
        }
        for ev in events.iter() {
            let idx = ev.token().0;
            let Some(p) = slots[idx].as_mut() else { continue };
            if ev.is_error() || ev.is_read_closed() && !ev.is_readable() {
                let e = p.stream.take_error().ok().flatten();
                return Err(format!("connection failed after {} established: {:?}", done.len(), e));
            }
            if !p.sent && ev.is_writable() {
                match p.stream.write(&msg) {
                    Ok(n) if n == msg.len() => p.sent = true,
                    Ok(_) => return Err("short write on a fresh connection".into()),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::NotConnected) => {}
                    Err(e) => return Err(format!("connection failed after {} established: {e}", done.len())),
                }
            }
            if ev.is_readable() {
                loop {
                    match p.stream.read(&mut buf) {
                        Ok(0) => {
                            return Err(format!("connection closed by server after {} established", done.len()))
                        }
                        Ok(n) => p.parser.feed_count(&buf[..n]).map_err(|e| format!("after {} established: {e}", done.len()))?,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(format!("connection failed after {} established: {e}", done.len())),
                    }
                }
            }
            if p.parser.pongs > 0 {
                let mut p = slots[idx].take().unwrap();
                poll.registry().deregister(&mut p.stream).ok();
                done.push(p.stream);
                free.push(idx);
                inflight -= 1;
            }
        }
    }
    let took = t0.elapsed();
    let cpu1 = cfg.pid.and_then(proto::proc_cpu_ns);
    println!(
        "Connected {} conns in {:.1} ms ({} conns/sec)",
        commafy(done.len() as u64),
        took.as_secs_f64() * 1e3,
        commafy((done.len() as f64 / took.as_secs_f64()) as u64)
    );
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        println!("Server CPU: {} ns during load (pid {})", b.saturating_sub(a), cfg.pid.unwrap());
    }
    println!("READY (holding {} connections)", done.len());
    let _ = std::io::stdout().flush();
    match cfg.hold {
        Some(d) => std::thread::sleep(d),
        None => {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin();
            while !matches!(stdin.read(&mut sink), Ok(0) | Err(_)) {}
        }
    }
    // Check nobody was dropped while we held them.
    let mut closed = 0;
    for s in done.iter_mut() {
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(n) => {
                    if buf[..n].windows(4).any(|w| w == b"PING") {
                        let _ = s.write(b"PONG\r\n");
                    }
                }
                Err(_) => break,
            }
        }
    }
    if closed > 0 {
        return Err(format!("{closed} of {} connections were closed by the server while held", done.len()));
    }
    println!("Released {} connections", done.len());
    Ok(())
}
