//! Logic shared by the `xtask` pipeline and the downstream installer.

pub mod kernel;
pub mod release;
pub mod unpack;

pub use kernel::{select_bucket, Bucket, BucketError, KernelVersion, VersionError};
