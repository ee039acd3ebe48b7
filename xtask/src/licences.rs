//! The project's licences, by where a file lives: one table, held to the tree by a test.
//!
//! - The BPF programs (legacy and CO-RE) and everything compiled with them run in the kernel
//!   and call GPL-only helpers: GPL-2.0, as the kernel.
//! - `kc-loader` (co-re/loader, the vmtest init and the agent example) links libbpf and
//!   embeds those objects: GPL-2.0.
//! - The headers an agent includes to read our maps (a CO-RE cell ships them beside the
//!   skeletons, [`SHARED_HEADERS`]): LGPL-2.1 OR BSD-2-Clause, as libbpf and bpftool's
//!   skeletons, so an agent's own user space may carry any licence.
//! - The Rust workspace (xtask, kc-select, kc-install, ...): GPL-3.0-or-later. Its programs run
//!   the loader as a separate process and never link the C above.
//! - The Go example (`examples/go/`), written to be copied into agents: BSD-2-Clause, which
//!   the libraries it links (cilium/ebpf: MIT; golang.org/x: BSD-3-Clause) combine with.
//!
//! Each licence's text is in `LICENSES/`, named by its SPDX identifier.

use crate::compile::cell::SHARED_HEADERS;

/// The kernel's licence: the BPF programs, the loader and what is compiled with them.
const KERNEL_SIDE: &str = "GPL-2.0";
/// libbpf's: the headers an agent includes.
const AGENT_HEADERS: &str = "(LGPL-2.1 OR BSD-2-Clause)";

/// The example agents copy from.
const EXAMPLES: &str = "BSD-2-Clause";

/// The SPDX expression the C file at `path` (relative to the checkout) must carry on its
/// first line, or `None` for a generated file that carries none.
pub fn c_licence(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name == "vmlinux.h" {
        // bpftool's dump of a kernel's BTF: the kernel's own types (GPL-2.0), regenerated.
        None
    } else if path.starts_with("includes/") && SHARED_HEADERS.contains(&name) {
        Some(AGENT_HEADERS)
    } else {
        Some(KERNEL_SIDE)
    }
}

/// The licence texts an SPDX expression needs: `LICENSES/<id>.txt` for each identifier.
pub fn texts(expression: &str) -> Vec<String> {
    expression
        .split(|c: char| c == '(' || c == ')' || c.is_whitespace())
        .filter(|w| !w.is_empty() && !matches!(*w, "OR" | "AND" | "WITH"))
        .map(|id| format!("LICENSES/{id}.txt"))
        .collect()
}

/// What the first line of a C file says its licence is.
fn spdx_of(first_line: &str) -> Option<&str> {
    let at = first_line.find("SPDX-License-Identifier:")? + "SPDX-License-Identifier:".len();
    Some(first_line[at..].trim().trim_end_matches("*/").trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn c_files(root: &Path, dir: &str, out: &mut Vec<String>) {
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            let rel = format!("{dir}/{}", e.file_name().to_string_lossy());
            if e.path().is_dir() {
                c_files(root, &rel, out);
            } else if rel.ends_with(".c") || rel.ends_with(".h") {
                out.push(rel);
            }
        }
    }

    #[test]
    fn every_c_file_carries_the_licence_of_where_it_lives() {
        let root = crate::paths::project_root();
        let mut files = Vec::new();
        for dir in ["includes", "co-re", "kernel"] {
            c_files(&root, dir, &mut files);
        }
        assert!(files.len() > 50, "only {} C files found", files.len());
        let mut wrong = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(root.join(f)).unwrap();
            let says = spdx_of(text.lines().next().unwrap_or(""));
            if says != c_licence(f) {
                wrong.push(format!("{f}: says {says:?}, must say {:?}", c_licence(f)));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn every_go_file_of_the_example_is_bsd_2_clause() {
        let root = crate::paths::project_root();
        let dir = root.join(crate::go::EXAMPLE);
        let mut seen = 0;
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".go") {
                seen += 1;
                let text = std::fs::read_to_string(e.path()).unwrap();
                let says = spdx_of(text.lines().next().unwrap_or(""));
                assert_eq!(says, Some(EXAMPLES), "{}/{name}", crate::go::EXAMPLE);
            }
        }
        assert!(
            seen >= 4,
            "only {seen} Go files under {}",
            crate::go::EXAMPLE
        );
    }

    #[test]
    fn every_licence_in_use_has_its_text() {
        let root = crate::paths::project_root();
        let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let workspace: toml::Value = toml::from_str(&cargo).unwrap();
        let rust = workspace["workspace"]["package"]["license"]
            .as_str()
            .unwrap();
        for expression in [rust, KERNEL_SIDE, AGENT_HEADERS, EXAMPLES] {
            for text in texts(expression) {
                assert!(
                    root.join(&text).is_file(),
                    "{expression}: {text} is missing"
                );
            }
        }
    }

    #[test]
    fn the_table_and_its_reading() {
        assert_eq!(
            c_licence("includes/kc_common.h"),
            Some("(LGPL-2.1 OR BSD-2-Clause)")
        );
        assert_eq!(c_licence("includes/kc_bpf.h"), Some("GPL-2.0"));
        assert_eq!(c_licence("co-re/loader/kc_embedded.h"), Some("GPL-2.0"));
        assert_eq!(c_licence("co-re/arm64/vmlinux.h"), None);
        assert_eq!(
            texts("(LGPL-2.1 OR BSD-2-Clause)"),
            ["LICENSES/LGPL-2.1.txt", "LICENSES/BSD-2-Clause.txt"]
        );
        assert_eq!(
            spdx_of("/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */"),
            Some("(LGPL-2.1 OR BSD-2-Clause)")
        );
        assert_eq!(
            spdx_of("// SPDX-License-Identifier: GPL-2.0"),
            Some("GPL-2.0")
        );
        assert_eq!(spdx_of("#ifndef X"), None);
    }
}
