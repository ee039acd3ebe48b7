//! Debian archive formats: versions, `Packages` indexes, mirrors, `.deb` files.

pub mod deb;
pub mod index;
pub mod mirror;
pub mod version;
