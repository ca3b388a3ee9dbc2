//! egressgen: one SNI allowlist for Istio egress gateways, rendered, linted
//! and enforced locally. See ARCHITECTURE.md for the map of the code.

pub mod cli;
pub mod config;
pub mod domain;
pub mod escape;
pub mod explain;
pub mod lint;
pub mod migrate;
pub mod output;
pub mod plugin;
pub mod render;
pub mod schema;
pub mod serve;
