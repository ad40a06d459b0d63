//! Continuous replication (in progress): the wire protocol, mutual
//! authentication, and log shipping from the active into a copy's log
//! directory. Replay on passive copies, seeding, status and retention caps
//! build on these (DESIGN.md, "Replication").

pub mod auth;
mod error;
mod session;
pub mod wire;

pub use auth::ClusterKey;
pub use error::{ReplError, Result};
pub use session::{CopyEntry, CopyProgress, CopyRegistry, Follower, ShipOptions, serve_copy};
