//! Operations on the live cache tree that the config's cache types drive: validating cache
//! files against their type's rules, and repairing invalid ones from snapshot history.
//! Nothing here prints; the binary renders the reports.

pub mod repair;
pub mod validate;
