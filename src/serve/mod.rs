//! `egressgen serve`: a local SNI proxy that enforces the allowlist.
pub mod hello;
