//! The running kernel is the judge of BTF. Seeded mutants of our own objects' `.BTF` (as
//! libbpf hands it to the kernel) and of the kernel's own BTF are loaded with
//! `BPF_BTF_LOAD` and given to `kc_verify::btf_kernel::check`: the two must agree on every
//! mutant, in both directions. Disagreements are written to
//! `target/btf-differential/` with the kernel's log, to be kept as regression cases.
//!
//! Needs root (bpf(2)); `KC_DIFF_SEED` and `KC_DIFF_MUTANTS` change the run.

mod common;

use std::path::PathBuf;

use common::Rng;
use kc_verify::btf::{Btf, Kind};
use kc_verify::btf_kernel;

const BPF_BTF_LOAD: libc::c_long = 18;

/// `union bpf_attr` for BPF_BTF_LOAD, padded: the kernel wants the unused tail zeroed.
#[repr(C)]
#[derive(Default)]
struct BtfLoadAttr {
    btf: u64,
    log_buf: u64,
    btf_size: u32,
    log_size: u32,
    log_level: u32,
    log_true_size: u32,
    flags: u32,
    token_fd: i32,
    _tail: [u64; 8],
}

/// Loads `data` as BTF; `Err(errno)` when the kernel refuses it. With `log`, the kernel's
/// verifier log is written there.
fn kernel_load(data: &[u8], log: Option<&mut Vec<u8>>) -> Result<(), i32> {
    let mut attr = BtfLoadAttr {
        btf: data.as_ptr() as u64,
        btf_size: data.len() as u32,
        ..Default::default()
    };
    if let Some(buf) = &log {
        attr.log_buf = buf.as_ptr() as u64;
        attr.log_size = buf.len() as u32;
        attr.log_level = 1;
    }
    // SAFETY: the attribute points at live buffers of the sizes it states.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_BTF_LOAD,
            &mut attr as *mut BtfLoadAttr,
            std::mem::size_of::<BtfLoadAttr>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    // SAFETY: the kernel just gave us this descriptor.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// The tail of the kernel's log for `data` (where it says why).
fn kernel_log(data: &[u8]) -> String {
    let mut buf = vec![0u8; 16 << 20];
    let _ = kernel_load(data, Some(&mut buf));
    let text =
        String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == 0).unwrap_or(0)]).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(6)..].join("\n")
}

/// A valid BTF and where its parts are.
struct Base {
    name: String,
    data: Vec<u8>,
    /// (record offset, record length, kind) of each type, in id order.
    types: Vec<(usize, usize, Kind)>,
    strings: (usize, usize),
}

impl Base {
    fn new(name: &str, data: Vec<u8>) -> Self {
        let btf = Btf::parse(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ends: Vec<usize> = btf.types.iter().skip(1).map(|t| t.offset).collect();
        let hdr = u32::from_le_bytes(data[4..8].try_into().unwrap()) as usize;
        let word = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let (type_end, str_off, str_len) = (hdr + word(8) + word(12), hdr + word(16), word(20));
        let types = btf
            .types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                (
                    t.offset,
                    ends.get(i).copied().unwrap_or(type_end) - t.offset,
                    t.kind,
                )
            })
            .collect();
        Self {
            name: name.into(),
            types,
            strings: (str_off, str_len),
            data,
        }
    }

    /// One mutant and what was done to it.
    fn mutant(&self, rng: &mut Rng) -> (Vec<u8>, String) {
        let mut d = self.data.clone();
        let rounds = if rng.below(5) == 0 { 2 } else { 1 };
        let mut what = Vec::new();
        for _ in 0..rounds {
            what.push(self.mutate(&mut d, rng));
        }
        (d, what.join("; "))
    }

    fn mutate(&self, d: &mut Vec<u8>, rng: &mut Rng) -> String {
        let n = self.types.len() as u32;
        let interesting = [
            0,
            1,
            2,
            3,
            4,
            7,
            8,
            12,
            16,
            24,
            31,
            32,
            63,
            64,
            127,
            128,
            129,
            255,
            256,
            0xffff,
            0x1_0000,
            0xf_ffff,
            0x10_0000,
            0xff_ffff,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            n,
            n + 1,
            n.saturating_sub(1),
        ];
        let put = |d: &mut Vec<u8>, at: usize, v: u32| {
            if at + 4 <= d.len() {
                d[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        };
        let get = |d: &[u8], at: usize| {
            d.get(at..at + 4)
                .map_or(0, |w| u32::from_le_bytes(w.try_into().unwrap()))
        };
        let (t_off, t_len, t_kind) = self.types[rng.below(self.types.len())];
        let id = self.types.iter().position(|t| t.0 == t_off).unwrap() + 1;
        match rng.below(12) {
            0 => {
                let field = rng.pick(&[2usize, 3, 4, 8, 12, 16, 20]);
                if field < 4 {
                    let v = rng.pick(&[0u8, 1, 2, 0x80, 0xff]);
                    if let Some(x) = d.get_mut(field) {
                        *x = v;
                    }
                } else {
                    let v = rng.pick(&interesting[..27]);
                    let old = get(d, field);
                    put(
                        d,
                        field,
                        if rng.below(2) == 0 {
                            v
                        } else {
                            old.wrapping_add(rng.pick(&[1, 4, 0xffff_fffc, 0xffff_ffff]))
                        },
                    );
                }
                format!("header byte {field}")
            }
            1 => {
                let bit = rng.below(32);
                put(d, t_off + 4, get(d, t_off + 4) ^ (1 << bit));
                format!("[{id}] {t_kind:?}: info bit {bit}")
            }
            2 => {
                let kind = rng.below(32) as u32;
                put(
                    d,
                    t_off + 4,
                    (get(d, t_off + 4) & !(0x1f << 24)) | (kind << 24),
                );
                format!("[{id}] {t_kind:?}: kind {kind}")
            }
            3 => {
                let info = get(d, t_off + 4);
                let vlen = (info & 0xffff) as u16;
                let new = rng.pick(&[vlen.wrapping_add(1), vlen.wrapping_sub(1), 0, 1, 3, 0xffff]);
                put(d, t_off + 4, (info & !0xffff) | new as u32);
                format!("[{id}] {t_kind:?}: vlen {new}")
            }
            4 | 9 => {
                let v = if rng.below(2) == 0 {
                    rng.pick(&interesting)
                } else {
                    1 + rng.below(n as usize) as u32
                };
                put(d, t_off + 8, v);
                format!("[{id}] {t_kind:?}: size/type {v}")
            }
            5 | 10 => {
                if t_len <= 12 {
                    return self.mutate(d, rng);
                }
                let word = 12 + 4 * rng.below((t_len - 12) / 4);
                let v = match rng.below(3) {
                    0 => rng.pick(&interesting),
                    1 => 1 + rng.below(n as usize) as u32,
                    _ => get(d, t_off + word) ^ (1 << rng.below(32)),
                };
                put(d, t_off + word, v);
                format!("[{id}] {t_kind:?}: word {} = {v}", word / 4)
            }
            6 => {
                let (_, len) = self.strings;
                let inside = rng.below(len) as u32;
                let v = rng.pick(&[0, 1, len as u32 - 1, len as u32, inside, 0x100_0000]);
                put(d, t_off, v);
                format!("[{id}] {t_kind:?}: name_off {v}")
            }
            7 => {
                let (off, len) = self.strings;
                let at = off + rng.below(len);
                let b = rng.pick(&[0u8, b'.', b'-', b'A', b'1', 0xe9, b' ', b'?', 0x7f, b'_']);
                if let Some(x) = d.get_mut(at) {
                    *x = b;
                }
                format!("string byte {} = {b:#x}", at - off)
            }
            8 => {
                let at = rng.below(d.len().max(1));
                d.truncate(at);
                format!("cut at {at}")
            }
            _ => {
                let v = rng.below(n as usize + 2) as u32;
                put(d, t_off + 8, v);
                format!("[{id}] {t_kind:?}: refers to {v}")
            }
        }
    }
}

/// The run's seed, and the BTF to mutate with how many mutants of each.
const SEED: u64 = 0x6b63_5f62_7466;

fn bases() -> Vec<(Base, usize)> {
    let (_, mutants) = common::knobs(SEED, 1500);
    let mut out = Vec::new();
    let mut objects = vec![(
        "mount.bpf.o".to_string(),
        include_bytes!("data/mount.bpf.o").to_vec(),
    )];
    // The CO-RE objects of the last build, when there is one.
    let built =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../artifacts/cells/kc-ebpf-co-re-glibc");
    if let Ok(dir) = std::fs::read_dir(&built) {
        let mut found: Vec<PathBuf> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".bpf.o"))
            .collect();
        found.sort();
        for p in found {
            objects.push((
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            ));
        }
    }
    let per_object = mutants / objects.len();
    for (name, object) in objects {
        let btf =
            kc_verify::object::btf_as_loaded(&object).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push((Base::new(&name, btf), per_object));
    }
    if let Ok(vmlinux) = std::fs::read("/sys/kernel/btf/vmlinux") {
        // Five megabytes per load: fewer of these.
        out.push((Base::new("vmlinux", vmlinux), (mutants / 15).max(20)));
    }
    out
}

#[test]
fn btf_verdicts_match_the_running_kernel_needs_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        kc_common::skip::skip(
            "btf_verdicts_match_the_running_kernel_needs_root",
            "loading BTF into the kernel needs root",
        );
        return;
    }
    let (seed, _) = common::knobs(SEED, 1500);
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/btf-differential");
    let _ = std::fs::remove_dir_all(&out_dir);
    let (mut total, mut rejected, mut disagreements) = (0, 0, Vec::new());
    for (base, count) in bases() {
        assert_eq!(
            kernel_load(&base.data, None),
            Ok(()),
            "{}: the kernel refuses the unmutated BTF",
            base.name
        );
        btf_kernel::check(&base.data)
            .unwrap_or_else(|f| panic!("{}: unmutated BTF refused: {f}", base.name));
        let mut rng = Rng(seed ^ base.data.len() as u64);
        for i in 0..count {
            let (mutant, what) = base.mutant(&mut rng);
            let kernel = kernel_load(&mutant, None);
            let ours = btf_kernel::check(&mutant);
            total += 1;
            rejected += kernel.is_err() as usize;
            if kernel.is_ok() != ours.is_ok() {
                std::fs::create_dir_all(&out_dir).unwrap();
                let file = out_dir.join(format!("{}-{i}.btf", base.name));
                std::fs::write(&file, &mutant).unwrap();
                disagreements.push(format!(
                    "{} ({what}): kernel {:?}, ours {:?}\n  kernel log: {}",
                    file.display(),
                    kernel.map_err(|e| std::io::Error::from_raw_os_error(e).to_string()),
                    ours.map_err(|f| f.to_string()),
                    kernel_log(&mutant).replace('\n', "\n    ")
                ));
            }
        }
    }
    eprintln!(
        "{total} mutants (seed {seed:#x}), the kernel refused {rejected}, {} disagreements",
        disagreements.len()
    );
    assert!(
        total >= 1000 || std::env::var("KC_DIFF_MUTANTS").is_ok(),
        "too few mutants: {total}"
    );
    assert!(
        disagreements.is_empty(),
        "{} of {total} mutants judged differently from the kernel:\n{}",
        disagreements.len(),
        disagreements
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
