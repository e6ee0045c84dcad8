//! Engine tests: see below.
