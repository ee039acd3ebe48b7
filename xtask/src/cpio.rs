//! newc cpio archives, the format the kernel unpacks as an initramfs.

/// One member: a directory, a regular file or a symbolic link.
pub enum Member<'a> {
    Dir(&'a str),
    Symlink {
        name: &'a str,
        target: &'a str,
    },
    File {
        name: &'a str,
        data: &'a [u8],
        executable: bool,
    },
}

fn header(out: &mut Vec<u8>, ino: u32, mode: u32, size: usize, name: &str) {
    let fields = [
        ino,
        mode,
        0,
        0,
        1,
        0,
        size as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Writes a newc archive: members in the given order (directories before their contents),
/// owned by root, mtime 0, then the trailer.
pub fn newc(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let ino = i as u32 + 1;
        match m {
            Member::Dir(name) => header(&mut out, ino, 0o040755, 0, name),
            // A link's body is its target.
            Member::Symlink { name, target } => {
                header(&mut out, ino, 0o120777, target.len(), name);
                out.extend_from_slice(target.as_bytes());
                pad4(&mut out);
            }
            Member::File {
                name,
                data,
                executable,
            } => {
                header(
                    &mut out,
                    ino,
                    if *executable { 0o100755 } else { 0o100644 },
                    data.len(),
                    name,
                );
                out.extend_from_slice(data);
                pad4(&mut out);
            }
        }
    }
    header(&mut out, 0, 0, 0, "TRAILER!!!");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let a = newc(&[
            Member::Dir("objects"),
            Member::File {
                name: "init",
                data: b"abc",
                executable: true,
            },
        ]);
        assert!(a.starts_with(b"070701"));
        assert_eq!(a.len() % 4, 0);
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("objects\0") && text.contains("init\0"));
        assert!(
            text.ends_with("TRAILER!!!\0\0\0\0"),
            "trailer, NUL, then padding to 4"
        );
        // The file header: mode 0100755, size 3, name size 5.
        let at = text.find("init\0").unwrap() - 110;
        assert_eq!(&text[at..at + 6], "070701");
        assert_eq!(&text[at + 14..at + 22], "000081ed");
        assert_eq!(&text[at + 54..at + 62], "00000003");
        assert_eq!(&text[at + 94..at + 102], "00000005");
    }

    #[test]
    fn gnu_cpio_lists_it_needs_cpio() {
        if !crate::process::exists("cpio") {
            kc_common::skip::skip(
                "gnu_cpio_lists_it_needs_cpio",
                "no cpio command to cross-check with (`cargo xtask setup` installs cpio)",
            );
            return;
        }
        let a = newc(&[
            Member::Dir("objects"),
            Member::File {
                name: "objects/x.o",
                data: b"12345",
                executable: false,
            },
            Member::Symlink {
                name: "current",
                target: "objects",
            },
        ]);
        let sh = crate::process::shell();
        let out = crate::process::output(xshell::cmd!(sh, "cpio -tv --quiet").stdin(&a)).unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        let names: Vec<String> = listing
            .lines()
            .map(|l| l.split_whitespace().skip(8).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(
            names,
            ["objects", "objects/x.o", "current -> objects"],
            "{listing}"
        );
    }
}
