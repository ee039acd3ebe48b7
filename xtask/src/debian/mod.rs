//! Debian archive formats: versions, `Packages` indexes, signed `Release` files, mirrors,
//! `.deb` files.

pub mod deb;
pub mod index;
pub mod mirror;
pub mod release;
pub mod signature;
pub mod version;
pub mod xz;
