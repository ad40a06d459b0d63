//! Continuous replication (in progress): the wire protocol and mutual
//! authentication so far. Log shipping, replay on passive copies and
//! seeding build on these (DESIGN.md, "Replication").

pub mod auth;
mod error;
pub mod wire;

pub use auth::ClusterKey;
pub use error::{ReplError, Result};
