//! Continuous replication (in progress): the wire protocol, mutual
//! authentication, and log shipping from the active into a copy's log
//! directory. Replay on passive copies, seeding, status and retention caps
//! build on these (DESIGN.md, "Replication").

mod active;
pub mod auth;
mod compare;
mod copy;
mod error;
mod registry_file;
mod seed;
mod source;
#[doc(hidden)]
pub mod state_files;
pub mod wire;

pub use active::{CopyEntry, CopyProgress, CopyRegistry, ShipOptions, serve_copy};
pub use auth::ClusterKey;
pub use compare::{Comparison, compare};
pub use copy::{CopyState, CopyStatus, Follower};
pub use error::{ReplError, Result};
pub use source::{LogHold, PassiveSource, ShipSource};
