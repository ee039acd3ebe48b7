//! libbpf is the judge of an object's ELF: seeded mutants of our objects (ELF and section
//! headers, symbols, relocations, instructions, section bytes) are opened with
//! `bpf_object__open_mem` by a small C helper linked against the system libbpf and given to
//! `kc_verify::verify`. No mutant that libbpf refuses may pass `verify`; mutants `verify`
//! refuses and libbpf opens are counted (verify also holds policy libbpf does not: license,
//! file names, kind). Mismatches are written to `target/libbpf-differential/`.
//!
//! Needs a C compiler and libbpf's headers (`cargo xtask setup` installs both).

mod common;
use common::Rng;

use std::path::{Path, PathBuf};
use std::process::Command;

const HELPER: &str = r#"
#include <bpf/libbpf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static int print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (getenv("KC_LIBBPF_VERBOSE") && level != LIBBPF_DEBUG)
		return vfprintf(stderr, fmt, args);
	return 0;
}
/* One line per file: 0 when libbpf opens it, else the negative error. */
int main(int argc, char **argv)
{
	libbpf_set_print(print);
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		long n;
		char *buf;
		if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
			return 2;
		buf = malloc(n ? n : 1);
		if (!buf || fread(buf, 1, n, f) != (size_t)n)
			return 2;
		fclose(f);
		struct bpf_object *obj = bpf_object__open_mem(buf, n, NULL);
		long err = libbpf_get_error(obj);
		printf("%ld\n", err);
		if (!err)
			bpf_object__close(obj);
		free(buf);
	}
	return 0;
}
"#;

fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/libbpf-differential")
}

/// Builds the helper; `None` (with the reason printed) when there is no compiler or libbpf.
fn helper(dir: &Path) -> Option<PathBuf> {
    let src = dir.join("libbpf_open.c");
    let bin = dir.join("libbpf_open");
    std::fs::write(&src, HELPER).unwrap();
    match Command::new("cc")
        .arg("-O1")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .arg("-lbpf")
        .output()
    {
        Ok(o) if o.status.success() => Some(bin),
        Ok(o) => {
            kc_common::skip::skip(
                "libbpf differential",
                &format!(
                    "cannot build against libbpf (install libbpf-dev: `cargo xtask setup`): {}",
                    String::from_utf8_lossy(&o.stderr)
                ),
            );
            None
        }
        Err(e) => {
            kc_common::skip::skip("libbpf differential", &format!("no C compiler (cc): {e}"));
            None
        }
    }
}

/// libbpf crashed on the file (a libbpf bug: it certainly cannot open it).
const CRASHED: i64 = i64::MIN;

/// libbpf's verdict on each file: `Ok` or the error it returned.
fn libbpf_open(helper: &Path, files: &[PathBuf]) -> Vec<Result<(), i64>> {
    let mut verdicts = Vec::new();
    for chunk in files.chunks(256) {
        let out = Command::new(helper).args(chunk).output().unwrap();
        if !out.status.success() && chunk.len() > 1 {
            // One file crashed libbpf: judge this chunk file by file.
            for f in chunk {
                verdicts.extend(libbpf_open(helper, std::slice::from_ref(f)));
            }
            continue;
        }
        if !out.status.success() {
            verdicts.push(Err(CRASHED));
            continue;
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let err: i64 = line.trim().parse().unwrap();
            verdicts.push(if err == 0 { Ok(()) } else { Err(err) });
        }
    }
    assert_eq!(verdicts.len(), files.len());
    verdicts
}

fn libbpf_says(helper: &Path, file: &Path) -> String {
    let out = Command::new(helper)
        .arg(file)
        .env("KC_LIBBPF_VERBOSE", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

fn le(d: &[u8], at: usize, n: usize) -> u64 {
    let mut v = 0u64;
    for i in 0..n {
        v |= (*d.get(at + i).unwrap_or(&0) as u64) << (8 * i);
    }
    v
}

fn put(d: &mut [u8], at: usize, n: usize, v: u64) {
    for i in 0..n {
        if let Some(b) = d.get_mut(at + i) {
            *b = (v >> (8 * i)) as u8;
        }
    }
}

/// A section: header offset, type, flags, data offset and size, entry size.
struct Section {
    header: usize,
    kind: u32,
    flags: u64,
    offset: usize,
    size: usize,
}

fn sections(d: &[u8]) -> Vec<Section> {
    let (shoff, shnum) = (le(d, 40, 8) as usize, le(d, 60, 2) as usize);
    (0..shnum)
        .map(|i| {
            let h = shoff + 64 * i;
            Section {
                header: h,
                kind: le(d, h + 4, 4) as u32,
                flags: le(d, h + 8, 8),
                offset: le(d, h + 24, 8) as usize,
                size: le(d, h + 32, 8) as usize,
            }
        })
        .collect()
}

fn mutate(base: &[u8], rng: &mut Rng) -> (Vec<u8>, String) {
    let mut d = base.to_vec();
    let secs = sections(base);
    let interesting: [u64; 16] = [
        0,
        1,
        2,
        3,
        4,
        7,
        8,
        16,
        24,
        63,
        64,
        255,
        0xffff,
        0x7fff_ffff,
        0xffff_ffff,
        u64::MAX,
    ];
    let pick = |rng: &mut Rng| {
        if rng.below(3) == 0 {
            rng.below(secs.len() + 2) as u64
        } else {
            interesting[rng.below(interesting.len())]
        }
    };
    let of_kind = |k: &dyn Fn(&Section) -> bool| secs.iter().filter(|s| k(s)).collect::<Vec<_>>();
    match rng.below(7) {
        0 => {
            let at = rng.below(64);
            d[at] = rng.next() as u8;
            (d, format!("ELF header byte {at}"))
        }
        1 => {
            let s = &secs[rng.below(secs.len())];
            let (field, width) = [
                (0, 4),
                (4, 4),
                (8, 8),
                (24, 8),
                (32, 8),
                (40, 4),
                (44, 4),
                (56, 8),
            ][rng.below(8)];
            let v = pick(rng);
            put(&mut d, s.header + field, width, v);
            (
                d,
                format!("section header at {}: field {field} = {v}", s.header),
            )
        }
        2 => {
            let Some(symtab) = of_kind(&|s| s.kind == 2).first().copied() else {
                return mutate(base, rng);
            };
            let entry = symtab.offset + 24 * rng.below(symtab.size / 24);
            let (field, width) = [(0, 4), (4, 1), (5, 1), (6, 2), (8, 8), (16, 8)][rng.below(6)];
            let v = pick(rng);
            put(&mut d, entry + field, width, v);
            (d, format!("symbol at {entry}: field {field} = {v}"))
        }
        3 => {
            let rels = of_kind(&|s| s.kind == 9 && s.size >= 16);
            if rels.is_empty() {
                return mutate(base, rng);
            }
            let rel = rels[rng.below(rels.len())];
            let entry = rel.offset + 16 * rng.below(rel.size / 16);
            let what = match rng.below(3) {
                0 => {
                    let v = le(&d, entry, 8)
                        .wrapping_add([1, 4, 8, 0x1000, u64::MAX - 7][rng.below(5)]);
                    put(&mut d, entry, 8, v);
                    format!("r_offset {v}")
                }
                1 => {
                    let sym = pick(rng) & 0xffff_ffff;
                    put(&mut d, entry + 12, 4, sym);
                    format!("symbol index {sym}")
                }
                _ => {
                    let t = rng.below(12) as u64;
                    put(&mut d, entry + 8, 4, t);
                    format!("relocation type {t}")
                }
            };
            (d, format!("relocation at {entry}: {what}"))
        }
        4 => {
            let progs = of_kind(&|s| s.flags & 4 != 0 && s.size >= 8);
            if progs.is_empty() {
                return mutate(base, rng);
            }
            let p = progs[rng.below(progs.len())];
            let insn = p.offset + 8 * rng.below(p.size / 8);
            let at = insn + rng.below(8);
            d[at] = rng.next() as u8;
            (d, format!("instruction byte {at}"))
        }
        5 => {
            let data = of_kind(&|s| s.size > 0 && s.kind != 8);
            let s = data[rng.below(data.len())];
            let at = s.offset + rng.below(s.size);
            if at < d.len() {
                d[at] = [0u8, 1, 0xff, b'.', b'/', b'x', rng.next() as u8][rng.below(7)];
            }
            (d, format!("section data byte {at}"))
        }
        _ => {
            let at = rng.below(d.len());
            d.truncate(at);
            (d, format!("cut at {at}"))
        }
    }
}

#[test]
fn what_libbpf_refuses_verify_refuses_needs_libbpf() {
    let work = out_dir().join("work");
    let _ = std::fs::remove_dir_all(out_dir());
    std::fs::create_dir_all(&work).unwrap();
    let Some(helper) = helper(&work) else { return };
    let (seed, mutants) = common::knobs(0x6c69_6262_7066, 1600);
    let mut bases: Vec<(String, Vec<u8>)> = vec![
        (
            "mount.bpf.o".into(),
            include_bytes!("data/mount.bpf.o").to_vec(),
        ),
        (
            "rkc_mount.6.1.o".into(),
            include_bytes!("data/rkc_mount.6.1.o").to_vec(),
        ),
    ];
    // The objects of the last build, when there is one: CO-RE and one bucket's legacy pair.
    let cells = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../artifacts/cells");
    for cell in ["kc-ebpf-co-re-glibc", "kc-ebpf-6.1-glibc"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(cells.join(cell))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        found.retain(|p| p.extension().is_some_and(|e| e == "o"));
        found.sort();
        for p in found {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            bases.push((name, std::fs::read(&p).unwrap()));
        }
    }
    let mutants_per_base = (mutants / bases.len()).max(1);
    let (mut total, mut refused, mut stricter, mut crashed) = (0, 0, 0, 0);
    let mut misses = Vec::new();
    let mut stricter_reasons = std::collections::BTreeMap::new();
    for (name, base) in &bases {
        let (name, base) = (name.as_str(), base.as_slice());
        let mut rng = Rng(seed ^ base.len() as u64);
        let mutants: Vec<(Vec<u8>, String)> = (0..mutants_per_base)
            .map(|_| mutate(base, &mut rng))
            .collect();
        let files: Vec<PathBuf> = mutants
            .iter()
            .enumerate()
            .map(|(i, (m, _))| {
                let p = work.join(format!("{i}-{name}"));
                std::fs::write(&p, m).unwrap();
                p
            })
            .collect();
        let base_file = work.join(name);
        std::fs::write(&base_file, base).unwrap();
        assert_eq!(
            libbpf_open(&helper, &[base_file]),
            [Ok(())],
            "libbpf refuses the unmutated {name}"
        );
        assert!(
            kc_verify::verify(name, base).problems.is_empty(),
            "verify refuses the unmutated {name}"
        );
        for (i, verdict) in libbpf_open(&helper, &files).into_iter().enumerate() {
            let report = kc_verify::verify(name, &mutants[i].0);
            total += 1;
            refused += verdict.is_err() as usize;
            crashed += (verdict == Err(CRASHED)) as usize;
            match (verdict, report.problems.is_empty()) {
                (Err(e), true) => {
                    let kept = out_dir().join(format!("{i}-{name}"));
                    std::fs::copy(&files[i], &kept).unwrap();
                    misses.push(format!(
                        "{} ({}): libbpf {e}: {}",
                        kept.display(),
                        mutants[i].1,
                        libbpf_says(&helper, &kept)
                    ));
                }
                (Ok(()), false) => {
                    stricter += 1;
                    // The reason, without the numbers that vary from mutant to mutant.
                    let p = &report.problems[0];
                    let reason: String = format!("{}: {}", p.section, p.message)
                        .chars()
                        .map(|c| if c.is_ascii_digit() { '#' } else { c })
                        .take(90)
                        .collect();
                    *stricter_reasons.entry(reason).or_insert(0usize) += 1;
                }
                _ => {}
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    eprintln!("{total} mutants (seed {seed:#x}): libbpf refused {refused} (crashing on {crashed}); verify also refused {stricter} that libbpf opens; {} libbpf refusals verify missed", misses.len());
    let mut reasons: Vec<(usize, String)> =
        stricter_reasons.into_iter().map(|(r, n)| (n, r)).collect();
    reasons.sort_by(|a, b| b.cmp(a));
    for (n, r) in reasons.iter().take(12) {
        eprintln!("  verify alone refuses {n:>4}: {r}");
    }
    assert!(
        misses.is_empty(),
        "{} of {total} mutants libbpf cannot open pass verify:\n{}",
        misses.len(),
        misses
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
