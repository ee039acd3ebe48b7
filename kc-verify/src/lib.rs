//! Verification of kernel-collector's eBPF objects: a BTF/BTF.ext reader of our own and
//! ELF-level checks on top of the `object` crate. Shared by `cargo xtask verify` and the fuzz
//! target; it never panics on malformed input.

pub mod btf;
pub mod btf_kernel;
pub mod families;
pub mod libbpf;
pub mod maps;
pub mod object;
pub mod plan;
pub mod sources;

pub use object::{verify, ObjectKind, Problem, Report};
