//! Signals as poll events: the signals we handle are blocked and read from a signalfd that
//! is registered with the loop's `Poll`, so a handler never runs in the middle of a pass.

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
    Hangup,
    User1,
    User2,
}

impl Signal {
    /// The name Go's os/signal prints, which nats-server logs.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "interrupt",
            Signal::Terminate => "terminated",
            Signal::Hangup => "hangup",
            Signal::User1 => "user defined signal 1",
            Signal::User2 => "user defined signal 2",
        }
    }

    fn from_raw(n: u32) -> Option<Signal> {
        match n as libc::c_int {
            libc::SIGINT => Some(Signal::Interrupt),
            libc::SIGTERM => Some(Signal::Terminate),
            libc::SIGHUP => Some(Signal::Hangup),
            libc::SIGUSR1 => Some(Signal::User1),
            libc::SIGUSR2 => Some(Signal::User2),
            _ => None,
        }
    }
}

pub struct Signals {
    fd: OwnedFd,
}

impl Signals {
    /// Blocks SIGINT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 for this thread (call it before
    /// any other thread exists) and opens a nonblocking signalfd for them; ignores SIGXFSZ.
    pub fn new() -> io::Result<Signals> {
        // SAFETY: plain libc calls on a sigset_t we own; the fd returned is checked.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [
                libc::SIGINT,
                libc::SIGTERM,
                libc::SIGHUP,
                libc::SIGUSR1,
                libc::SIGUSR2,
            ] {
                libc::sigaddset(&mut set, s);
            }
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            // A write past RLIMIT_FSIZE raises SIGXFSZ, whose default action kills the
            // process. Ignored, the write fails with EFBIG instead, and the store reports
            // that to the publisher like any other failed write (as Go ignores it for
            // nats-server).
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Signals {
                fd: OwnedFd::from_raw_fd(fd),
            })
        }
    }

    pub fn register(&self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            &mut SourceFd(&self.fd.as_raw_fd()),
            token,
            Interest::READABLE,
        )
    }

    /// Every signal delivered since the last call.
    pub fn read(&self) -> Vec<Signal> {
        let mut out = Vec::new();
        loop {
            // SAFETY: signalfd_siginfo is plain data; read fills at most its size.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    (&mut info as *mut libc::signalfd_siginfo).cast(),
                    size,
                )
            };
            if n != size as isize {
                return out;
            }
            out.extend(Signal::from_raw(info.ssi_signo));
        }
    }
}

/// `--signal cmd[=pid]`: sends a running tern the signal for `cmd`, as nats-server does
/// (stop=KILL, quit=INT, term=TERM, reopen=USR1, reload=HUP, ldm=USR2). The target is a pid,
/// a pid file, or else the only other running process named `tern`.
pub fn send_command(spec: &str) -> Result<(), String> {
    let (cmd, target) = spec.split_once('=').unwrap_or((spec, ""));
    let sig = match cmd {
        "stop" => libc::SIGKILL,
        "quit" => libc::SIGINT,
        "term" => libc::SIGTERM,
        "reopen" => libc::SIGUSR1,
        "reload" => libc::SIGHUP,
        "ldm" => libc::SIGUSR2,
        _ => return Err(format!("unknown signal {cmd:?}")),
    };
    let pid = match target {
        "" => find_tern()?,
        t => match t.parse::<i32>() {
            Ok(pid) => pid,
            Err(_) => {
                let text = std::fs::read_to_string(t)
                    .map_err(|e| format!("could not read pid file {t}: {e}"))?;
                text.trim()
                    .parse()
                    .map_err(|_| format!("invalid pid in {t}: {:?}", text.trim()))?
            }
        },
    };
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(format!(
            "could not signal pid {pid}: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The pid of the one other process named `tern` (like nats-server's pgrep).
fn find_tern() -> Result<i32, String> {
    let me = std::process::id() as i32;
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .map_err(|e| format!("unable to resolve pid, try providing one: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "tern")
        })
        .collect();
    pids.sort_unstable();
    match pids.as_slice() {
        [] => Err("no tern processes running".into()),
        [pid] => Ok(*pid),
        many => Err(format!(
            "multiple tern processes running:\n{}",
            many.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )),
    }
}
