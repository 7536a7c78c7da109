//! PostgreSQL's vocabulary, pure: positions in the WAL, WAL file names and headers, and
//! `pg_control`. Everything here parses bytes or strings at the edge into newtypes and does no
//! I/O; no module outside `pg` interprets PostgreSQL formats itself.

pub mod client;
pub mod control;
#[doc(hidden)]
pub mod fixtures;
pub mod incremental;
pub mod lsn;
pub mod page;
pub mod passfile;
pub mod replication;
pub mod timeline;
pub mod wal;
pub mod wal_content;
pub mod wal_header;

pub use control::{ControlFile, PgVersion, SystemId};
pub use lsn::Lsn;
pub use timeline::TimelineHistory;
pub use wal::{Timeline, WalFileName, WalSegSize, WalSegmentName};
pub use wal_header::WalHeader;
