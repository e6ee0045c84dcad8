//! The interface subsystems plug into the loop through: routes (`cluster`), monitoring
//! (`monitor`), lame-duck mode (`lame_duck.rs`), and next JetStream.
//!
//! In the spirit of Redis's `aeCreateFileEvent` and `beforeSleep`: a source registers its
//! sockets under the tokens of its own range (`Cx::token`), tells the loop when it must run
//! again (`deadline`, `busy`), and gets a call at the end of every pass (`end_of_pass`). The
//! loop dispatches readiness by token range and never names a feature. A source may also own
//! NATS connections (`Conn::owner`: their bytes go to its `input`, their end to its
//! `closed`), take completions from helper threads (`woken`; the loop has one `mio::Waker`,
//! shared through `Cx::waker`), hear server-wide events (`event`), and, through the broker,
//! subscribe and publish inside an account (`core/internal.rs`).
//!
//! Sources see each other only through `Cx::others`: a source that has state to show (JetStream
//! its streams) hands it out from `state`, and one that shows it (monitoring, for /jsz, /varz
//! and /metrics) finds it by type (`Others::find`). The loop lends the other sources by
//! splitting its list around the one running, so no state moves into the broker and the
//! loop names neither side.

use crate::conn::Conn;
use crate::core::broker::Broker;
use mio::event::Event;
use mio::{Token, Waker};
use std::any::Any;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

/// A source's number: the index of its token range, and the owner mark on its connections.
pub type SourceId = usize;

/// Tokens below this are NATS connections (slab keys).
pub const SOURCE_BASE: usize = usize::MAX / 2;
/// Tokens per source.
pub const SOURCE_SPAN: usize = 1 << 32;

/// The tokens of source `id`.
pub fn tokens(id: SourceId) -> Range<usize> {
    let base = SOURCE_BASE + id * SOURCE_SPAN;
    base..base + SOURCE_SPAN
}

/// The source whose range holds token `t`, if `t` is in a source range at all.
pub fn source_of(t: usize) -> Option<SourceId> {
    t.checked_sub(SOURCE_BASE).map(|off| off / SOURCE_SPAN)
}

/// How a subsystem is plugged in (`Server::plug`): given its context, it returns its source,
/// or None when the config does not turn it on.
pub type Plug = fn(&mut Cx) -> std::io::Result<Option<Box<dyn Source>>>;

/// What happens to the whole server, told to every source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// Lame-duck mode began: the client listener is closed, INFO says `ldm`.
    LameDuck,
    /// A new config was applied.
    Reload,
    /// The server is stopping: every connection is about to close.
    Shutdown,
}

/// What a source may touch while it runs.
pub struct Cx<'a> {
    /// Connections, accounts, config: everything the core holds.
    pub broker: &'a mut Broker,
    /// The loop's waker, for helper threads (`util/worker.rs`).
    pub waker: &'a Arc<Waker>,
    /// This source: stamp it on the connections it owns.
    pub id: SourceId,
    /// Set to make the server stop after this pass.
    pub stop: &'a mut bool,
    /// Every other source (the loop's list without the one running).
    pub others: Others<'a>,
}

/// The sources other than the one running: the loop's list split around it.
pub struct Others<'a> {
    pub before: &'a mut [Box<dyn Source>],
    pub after: &'a mut [Box<dyn Source>],
}

impl Others<'_> {
    /// The other source whose `state` is a `T`, if one is plugged in. Borrowed mutably
    /// because reading may fill a cache (a consumer's pending count); a source that finds
    /// another only reads it.
    pub fn find<T: Any>(&mut self) -> Option<&mut T> {
        (self.before.iter_mut())
            .chain(self.after.iter_mut())
            .find_map(|s| s.state()?.downcast_mut::<T>())
    }
}

impl Cx<'_> {
    /// The `n`-th token of this source's range.
    pub fn token(&self, n: usize) -> Token {
        Token(tokens(self.id).start + n)
    }

    /// Which of this source's tokens `token` is.
    pub fn index(&self, token: Token) -> usize {
        token.0 - tokens(self.id).start
    }
}

/// What the loop needs from a subsystem.
pub trait Source {
    /// Readiness on one of the tokens this source registered.
    fn ready(&mut self, cx: &mut Cx, token: Token, ev: &Event);

    /// Bytes from a connection this source owns: act on the whole frames, return how many
    /// bytes were used (the loop keeps the rest, a frame split by the read).
    fn input(&mut self, cx: &mut Cx, t: usize, data: &[u8]) -> usize {
        let _ = (cx, t);
        data.len()
    }

    /// A connection this source owns was freed (after the reap of the pass).
    fn closed(&mut self, cx: &mut Cx, c: Conn) {
        let _ = (cx, c);
    }

    /// A helper thread woke the loop: take what is ready.
    fn woken(&mut self, cx: &mut Cx) {
        let _ = cx;
    }

    /// Something happened to the whole server.
    fn event(&mut self, cx: &mut Cx, ev: ServerEvent) {
        let _ = (cx, ev);
    }

    /// The earliest instant this source must run again (None: only on readiness).
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// Work at the end of every pass, before connections are flushed (dials, timers, ...).
    fn end_of_pass(&mut self, cx: &mut Cx) {
        let _ = cx;
    }

    /// Work left over that must run next pass without sleeping (poll timeout zero).
    fn busy(&self) -> bool {
        false
    }

    /// This source's state, for the sources that show it (`Others::find`): `Some(self)`
    /// from a source with something to show; None (the default) keeps it private.
    fn state(&mut self) -> Option<&mut dyn Any> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ranges_do_not_overlap() {
        assert_eq!(source_of(SOURCE_BASE - 1), None);
        assert_eq!(source_of(tokens(0).start), Some(0));
        assert_eq!(source_of(tokens(0).end - 1), Some(0));
        assert_eq!(source_of(tokens(3).start), Some(3));
        assert!(
            tokens(15).end < usize::MAX - 16,
            "room for the loop's own tokens"
        );
    }

    /// A source with a figure to show (`Shown`), and one that keeps its state private.
    struct Shown(u32);
    struct Private;

    impl Source for Shown {
        fn ready(&mut self, _: &mut Cx, _: Token, _: &Event) {}
        fn state(&mut self) -> Option<&mut dyn Any> {
            Some(self)
        }
    }

    impl Source for Private {
        fn ready(&mut self, _: &mut Cx, _: Token, _: &Event) {}
    }

    /// `find` looks on both sides of the running source and by type only.
    #[test]
    fn others_are_found_by_type() {
        let mut before: Vec<Box<dyn Source>> = vec![Box::new(Private)];
        let mut after: Vec<Box<dyn Source>> = vec![Box::new(Private), Box::new(Shown(7))];
        let mut others = Others {
            before: &mut before,
            after: &mut after,
        };
        assert_eq!(others.find::<Shown>().map(|s| s.0), Some(7));
        assert!(others.find::<Private>().is_none(), "Private shows nothing");
        let mut none = Others {
            before: &mut after[..1],
            after: &mut [],
        };
        assert!(none.find::<Shown>().is_none());
    }
}
