//! Logic shared by the `xtask` pipeline and the downstream installer.

pub mod attach;
pub mod dns;
pub mod flow;
pub mod host;
pub mod kernel;
pub mod names;
pub mod plan;
pub mod rate;
pub mod release;
pub mod report;
pub mod retry;
pub mod select;
pub mod skip;
pub mod unpack;

pub use attach::{AttachFamily, AttachMode, PassedOver};
pub use kernel::{select_bucket, Bucket, BucketError, KernelVersion, VersionError};
pub use names::{Arch, CellId, CellKind, Libc};
