//! pgkeep restore drills: restore a backup into a throwaway sandbox (a container through the
//! Docker Engine API, or a local process), replay WAL, check the result and record a report.

pub mod drill;
pub mod sandbox;

/// The crate's version, so dependents can report it.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
