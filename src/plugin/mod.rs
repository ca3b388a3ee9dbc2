//! egressgen as a plugin of other tools: the legacy Kustomize exec plugin
//! ([`kustomize`]) and the KRM function for kpt and Kustomize ([`krm`]).
//!
//! Both use the same `EgressGateway` config and the same renderer as
//! `egressgen render`; this module only adapts their calling conventions.
//! [`node`] carries the objects of a ResourceList through unchanged.

pub mod node;
