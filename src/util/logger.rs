//! The `log::Log` backend, writing lines the way nats-server does:
//! `[pid] 2026/11/21 10:00:00.123456 [INF] message` (local time, microseconds), to stderr or
//! to the file given by `-l`. `-D` enables `[DBG]`, `-V` enables `[TRC]`; `-T=false` drops the
//! timestamp. Settings can be changed while running (config reload), hence the lock.
//! Whether trace is on is also kept in an atomic flag (`trace_on`), which the message path
//! asks before formatting anything: the one copy of that fact, refreshed by every `init`.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

/// Where and how log lines go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSettings {
    pub debug: bool,
    pub trace: bool,
    pub time: bool,
    pub file: Option<String>,
}

struct Sink {
    time: bool,
    debug: bool,
    trace: bool,
    file: Option<File>,
}

struct Logger {
    sink: Mutex<Sink>,
}

static LOGGER: Logger = Logger {
    sink: Mutex::new(Sink {
        time: true,
        debug: false,
        trace: false,
        file: None,
    }),
};
static PID: AtomicU32 = AtomicU32::new(0);
static TRACE: AtomicBool = AtomicBool::new(false);

/// Trace logging is on: check it before formatting a `[TRC]` line on the message path.
#[inline]
pub fn trace_on() -> bool {
    TRACE.load(Ordering::Relaxed)
}

fn pid() -> u32 {
    PID.load(Ordering::Relaxed)
}

/// Installs the logger (first call) or applies new settings (later calls).
pub fn init(s: &LogSettings) -> io::Result<()> {
    let file = match &s.file {
        Some(path) => Some(OpenOptions::new().create(true).append(true).open(path)?),
        None => None,
    };
    PID.store(std::process::id(), Ordering::Relaxed);
    {
        let mut sink = LOGGER.sink.lock().unwrap_or_else(|e| e.into_inner());
        sink.time = s.time;
        sink.debug = s.debug;
        sink.trace = s.trace;
        sink.file = file;
    }
    let _ = log::set_logger(&LOGGER);
    TRACE.store(s.trace, Ordering::Relaxed);
    log::set_max_level(if s.trace {
        LevelFilter::Trace
    } else if s.debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    });
    Ok(())
}

fn tag(level: Level) -> &'static str {
    match level {
        Level::Error => "[ERR]",
        Level::Warn => "[WRN]",
        Level::Info => "[INF]",
        Level::Debug => "[DBG]",
        Level::Trace => "[TRC]",
    }
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        // Only our own records: libraries (mio) log at trace level too.
        m.level() <= log::max_level() && m.target().starts_with("tern")
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        // -D and -V are independent in nats-server: trace does not imply debug.
        let wanted = match r.level() {
            Level::Debug => sink.debug,
            Level::Trace => sink.trace,
            _ => true,
        };
        if !wanted {
            return;
        }
        let line = if sink.time {
            format!(
                "[{}] {} {} {}\n",
                pid(),
                crate::util::timefmt::local_timestamp(SystemTime::now()),
                tag(r.level()),
                r.args()
            )
        } else {
            format!("[{}] {} {}\n", pid(), tag(r.level()), r.args())
        };
        let _ = match &mut sink.file {
            Some(f) => f.write_all(line.as_bytes()),
            None => io::stderr().write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {}
}

/// An OS error as Go words it in nats-server's log lines ("connection refused", "too many
/// open files"): the C library's text without Rust's "(os error N)", first letter lowered.
pub fn os_error(e: &io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(code) => {
            let full = io::Error::from_raw_os_error(code).to_string();
            match full.rfind(" (os error ") {
                Some(i) => full[..i].to_string(),
                None => full,
            }
        }
        None => e.to_string(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_as_in_go() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(os_error(&refused), "connection refused");
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(os_error(&emfile), "too many open files");
        assert_eq!(os_error(&io::Error::other("No waker")), "no waker");
    }
}
