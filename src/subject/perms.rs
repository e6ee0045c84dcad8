//! A connection's publish and subscribe permissions, checked the way nats-server does.
//!
//! Built from the user's `Permissions` at CONNECT. Publish decisions are cached per subject
//! (bounded), so a permitted publisher pays one hash lookup per message. Subscribe checks run
//! once per SUB. A subscription allowed as a wildcard that overlaps a deny entry (`bar.*` with
//! `bar.x` denied) is filtered at delivery time (`deliver_denied`), as nats-server does.
//! `allow_responses` lets a user publish to the reply subjects of requests it received, a
//! limited number of times within a time limit.

use crate::subject::subject_matches;
use crate::util::hash::{new_map, FastMap};
use std::time::{Duration, Instant};

/// Subjects one may (allow) and may not (deny) use. `allow: None` allows everything;
/// deny wins over allow. Entries may use wildcards; a subscribe entry may name a queue
/// group as `"subject queue"`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectPerm {
    pub allow: Option<Vec<String>>,
    pub deny: Vec<String>,
}

/// What a user may publish and subscribe to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: SubjectPerm,
    pub subscribe: SubjectPerm,
    /// `allow_responses`: may publish to reply subjects of requests it received, at most
    /// this many times each, within the duration.
    pub allow_responses: Option<(u64, Duration)>,
}

/// Entries of an allow or deny list: a subject pattern, optionally with a queue group.
#[derive(Debug, Default)]
struct List {
    entries: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// What a list says about a subject: whether a plain entry matches, and the queue patterns
/// of the queue entries that match.
struct Verdict<'a> {
    plain: bool,
    queues: Vec<&'a [u8]>,
}

impl List {
    fn new(subjects: &[String]) -> List {
        let entries = subjects
            .iter()
            .map(|s| match s.split_once(' ') {
                Some((subj, q)) => (subj.as_bytes().to_vec(), Some(q.trim().as_bytes().to_vec())),
                None => (s.as_bytes().to_vec(), None),
            })
            .collect();
        List { entries }
    }

    /// `subject` may itself hold wildcards (a SUB): they then match as literal tokens, as in
    /// nats-server's sublist, so `bar.*` in a list allows `SUB bar.*` (and `SUB bar.>`, whose
    /// `>` is one token to `*`), but not `SUB *`.
    fn verdict(&self, subject: &[u8]) -> Verdict<'_> {
        let mut v = Verdict {
            plain: false,
            queues: Vec::new(),
        };
        for (pattern, queue) in &self.entries {
            if subject_matches(pattern, subject) {
                match queue {
                    None => v.plain = true,
                    Some(q) => v.queues.push(q),
                }
            }
        }
        v
    }
}

fn queue_matches(queue: &[u8], patterns: &[&[u8]]) -> bool {
    patterns.iter().any(|p| subject_matches(p, queue))
}

/// Publish-cache entries kept before the cache is reset.
const CACHE_MAX: usize = 1024;
/// Reply subjects remembered for `allow_responses` before expired ones are pruned.
const REPLIES_MAX: usize = 4096;

#[derive(Debug, Default)]
pub struct ConnPerms {
    pub_allow: Option<List>,
    pub_deny: Option<List>,
    sub_allow: Option<List>,
    sub_deny: Option<List>,
    pub_cache: FastMap<Box<[u8]>, bool>,
    deny_cache: FastMap<Box<[u8]>, bool>,
    /// `allow_responses`: (max messages, time limit) and the replies seen.
    responses: Option<(u64, Duration)>,
    replies: FastMap<Box<[u8]>, (Instant, u64)>,
}

fn lists(p: &SubjectPerm) -> (Option<List>, Option<List>) {
    let allow = p.allow.as_deref().map(List::new);
    let deny = (!p.deny.is_empty()).then(|| List::new(&p.deny));
    (allow, deny)
}

impl ConnPerms {
    pub fn new(p: &Permissions) -> ConnPerms {
        let (pub_allow, pub_deny) = lists(&p.publish);
        let (sub_allow, sub_deny) = lists(&p.subscribe);
        ConnPerms {
            pub_allow,
            pub_deny,
            sub_allow,
            sub_deny,
            pub_cache: new_map(),
            deny_cache: new_map(),
            responses: p.allow_responses,
            replies: new_map(),
        }
    }

    /// May this connection publish to `subject`?
    pub fn can_publish(&mut self, subject: &[u8], now: Instant) -> bool {
        if self.pub_allow.is_none() && self.pub_deny.is_none() {
            return true;
        }
        if let Some(&ok) = self.pub_cache.get(subject) {
            if ok || self.responses.is_none() {
                return ok;
            }
        }
        let mut ok = self
            .pub_allow
            .as_ref()
            .is_none_or(|l| l.verdict(subject).plain);
        if ok {
            ok = !self
                .pub_deny
                .as_ref()
                .is_some_and(|l| l.verdict(subject).plain);
        }
        if self.pub_cache.len() >= CACHE_MAX {
            self.pub_cache.clear();
        }
        self.pub_cache.insert(subject.into(), ok);
        if !ok {
            return self.may_respond(subject, now);
        }
        ok
    }

    /// A reply subject this connection received in a request, still within its limits.
    fn may_respond(&mut self, subject: &[u8], now: Instant) -> bool {
        let Some((max, ttl)) = self.responses else {
            return false;
        };
        let Some((at, n)) = self.replies.get_mut(subject) else {
            return false;
        };
        *n += 1;
        if *n > max || now.saturating_duration_since(*at) > ttl {
            self.replies.remove(subject);
            return false;
        }
        true
    }

    /// Remembers the reply subject of a delivered request (for `allow_responses`).
    pub fn saw_reply(&mut self, reply: &[u8], now: Instant) {
        let Some((_, ttl)) = self.responses else {
            return;
        };
        if self.replies.len() >= REPLIES_MAX {
            self.replies
                .retain(|_, (at, _)| now.saturating_duration_since(*at) <= ttl);
        }
        if self.replies.len() < REPLIES_MAX {
            self.replies.insert(reply.into(), (now, 0));
        }
    }

    pub fn tracks_replies(&self) -> bool {
        self.responses.is_some()
    }

    /// May this connection subscribe to `subject` (in queue group `queue`)?
    pub fn can_subscribe(&self, subject: &[u8], queue: Option<&[u8]>) -> bool {
        let mut ok = true;
        if let Some(allow) = &self.sub_allow {
            let v = allow.verdict(subject);
            ok = v.plain;
            if let Some(q) = queue {
                if !v.queues.is_empty() {
                    ok = queue_matches(q, &v.queues);
                }
            }
        }
        if ok {
            if let Some(deny) = &self.sub_deny {
                let v = deny.verdict(subject);
                ok = !v.plain;
                if let Some(q) = queue {
                    if !v.queues.is_empty() {
                        ok = !queue_matches(q, &v.queues);
                    }
                }
            }
        }
        ok
    }

    /// Whether a message on `subject` must not be delivered to this connection because its
    /// subscribe deny list covers it (a wildcard subscription can reach denied subjects).
    pub fn deliver_denied(&mut self, subject: &[u8]) -> bool {
        let Some(deny) = &self.sub_deny else {
            return false;
        };
        if let Some(&d) = self.deny_cache.get(subject) {
            return d;
        }
        let denied = deny.verdict(subject).plain;
        if self.deny_cache.len() >= CACHE_MAX {
            self.deny_cache.clear();
        }
        self.deny_cache.insert(subject.into(), denied);
        denied
    }

    pub fn has_sub_deny(&self) -> bool {
        self.sub_deny.is_some()
    }
}

/// Reply subjects reserved for the server's own use (service imports, JetStream acks,
/// gateways): nats-server refuses a client publish that uses one as its reply.
pub fn reserved_reply(reply: &[u8]) -> bool {
    (reply.len() > 3 && reply.starts_with(b"_R_."))
        || (reply.len() > 8 && reply.starts_with(b"$JS.ACK."))
        || (reply.len() > 5 && reply.starts_with(b"_GR_."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(allow: Option<&[&str]>, deny: &[&str]) -> SubjectPerm {
        SubjectPerm {
            allow: allow.map(|a| a.iter().map(|s| s.to_string()).collect()),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn publish_allow_and_deny() {
        let p = Permissions {
            publish: perm(Some(&["foo", "req.>", "secret.>"]), &["secret.>"]),
            ..Permissions::default()
        };
        let mut c = ConnPerms::new(&p);
        let now = Instant::now();
        assert!(c.can_publish(b"foo", now));
        assert!(c.can_publish(b"req.a.b", now));
        assert!(!c.can_publish(b"baz", now));
        assert!(!c.can_publish(b"secret.z", now));
        assert!(!c.can_publish(b"baz", now), "cached answer");
    }

    #[test]
    fn subscribe_with_queues_and_wildcards() {
        let p = Permissions {
            subscribe: perm(
                Some(&["bar", "bar.*", "q.only grp", "_INBOX.>"]),
                &["bar.x", "bar.y bad"],
            ),
            ..Permissions::default()
        };
        let mut c = ConnPerms::new(&p);
        assert!(c.can_subscribe(b"bar", None));
        assert!(c.can_subscribe(b"bar.*", None));
        // nats-server 2.9 matches the SUB's `>` as a literal token, which `*` covers.
        assert!(c.can_subscribe(b"bar.>", None));
        assert!(!c.can_subscribe(b"*", None));
        assert!(!c.can_subscribe(b"bar.x", None));
        assert!(!c.can_subscribe(b"bar.x", Some(b"g")));
        assert!(c.can_subscribe(b"bar.y", Some(b"good")));
        assert!(!c.can_subscribe(b"bar.y", Some(b"bad")));
        assert!(c.can_subscribe(b"q.only", Some(b"grp")));
        assert!(!c.can_subscribe(b"q.only", Some(b"other")));
        assert!(!c.can_subscribe(b"q.only", None));
        assert!(c.deliver_denied(b"bar.x"));
        assert!(!c.deliver_denied(b"bar.z"));
    }

    #[test]
    fn responses_are_allowed_a_limited_number_of_times() {
        let p = Permissions {
            publish: perm(Some(&[]), &[]),
            allow_responses: Some((2, Duration::from_secs(60))),
            ..Permissions::default()
        };
        let mut c = ConnPerms::new(&p);
        let now = Instant::now();
        assert!(!c.can_publish(b"_INBOX.1", now));
        c.saw_reply(b"_INBOX.1", now);
        assert!(c.can_publish(b"_INBOX.1", now));
        assert!(c.can_publish(b"_INBOX.1", now));
        assert!(!c.can_publish(b"_INBOX.1", now));
        c.saw_reply(b"_INBOX.2", now);
        assert!(!c.can_publish(b"_INBOX.2", now + Duration::from_secs(61)));
    }

    #[test]
    fn reserved_replies() {
        assert!(reserved_reply(b"_R_.abc"));
        assert!(reserved_reply(b"_R_."));
        assert!(!reserved_reply(b"_R_"));
        assert!(reserved_reply(b"$JS.ACK.x"));
        assert!(!reserved_reply(b"$JS.ACK."));
        assert!(reserved_reply(b"_GR_.a"));
        assert!(!reserved_reply(b"_INBOX.x"));
    }
}
