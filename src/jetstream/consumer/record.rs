//! What a consumer records of its own progress (the event log) and decides about itself,
//! for the stream- and account-level calls in `jetstream/consumers.rs`.

use super::config::AckPolicy;
use super::engine::PollCtx;
use super::state::{self, Event};
use super::Consumer;
use crate::jetstream::store::SyncTarget;

impl Consumer {
    /// Applies an event and records it for the log.
    pub(crate) fn record(&mut self, ev: Event) -> state::Applied {
        let a = self.state.apply(ev, self.config.ack_policy);
        if let Some(log) = &mut self.log {
            // Without acks a delivery only moves the floors: the pass's last one says all.
            if self.config.ack_policy == AckPolicy::None && matches!(ev, Event::Deliver { .. }) {
                self.last_none_delivery = Some(ev);
            } else {
                log.push(&ev);
            }
        }
        a
    }

    /// Writes the recorded events (the streams' flush must have come first).
    pub(crate) fn flush_log(&mut self) -> std::io::Result<Option<SyncTarget>> {
        let Some(log) = &mut self.log else {
            return Ok(None);
        };
        if let Some(ev) = self.last_none_delivery.take() {
            log.push(&ev);
        }
        log.flush(&self.state)
    }

    /// A flow control answer for this consumer: delivery may go on once it is the one
    /// awaited.
    pub(crate) fn flow_control_answered(&mut self, subject: &str) {
        if self.fc.answered(subject) {
            self.ready = true;
        }
    }

    /// A pull consumer past its threshold that still has requests with interest lives on
    /// (`checkWaitingForInterest`).
    pub(crate) fn still_wanted(&self, now: i64, cx: &PollCtx) -> bool {
        if self.config.is_push() {
            return self.active;
        }
        if now.saturating_sub(self.waiting.last) <= self.config.inactive_threshold {
            return true;
        }
        self.waiting
            .reqs
            .iter()
            .any(|w| (w.expires == 0 || w.expires >= now) && (cx.interest)(&w.reply))
    }
}
