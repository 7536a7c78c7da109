//! Patroni, as pgkeep sees it: the REST client (`GET /cluster` from any configured endpoint,
//! `/replica?lag=` and `/primary` health checks) and the choice of the member a backup reads
//! from. Asked at every run, so a failover needs no configuration change. Knows nothing of
//! backups, repositories or commands.

pub mod choose;
pub mod client;
pub mod cluster;

pub use choose::{Candidate, SourcePolicy, rank};
pub use client::Client;
pub use cluster::{Cluster, Member, Role};
