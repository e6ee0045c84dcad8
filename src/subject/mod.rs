//! Subjects: the index that maps a published subject to its subscriptions, and the
//! permission lists that say which subjects a user may use.

pub mod perms;
pub mod sublist;
