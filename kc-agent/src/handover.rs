//! Maps kc-agent creates itself because aya 0.14 cannot set a map's flags before load: the
//! start-time hashes that allocate as they go from 6.1 (`BPF_F_NO_PREALLOC`,
//! [`MapPlan::allocates_as_it_goes`], the rule kc-loader and the Go consumer apply too). aya
//! reuses a map pinned where `EbpfLoader::map_pin_path` points, so each is created here with
//! the object's key, value and size and the flag, pinned on a bpf file system (the host's
//! `/sys/fs/bpf` where it is one, else one mounted for the load in a private directory), and
//! the pins (and that mount) removed as soon as aya holds the maps: nothing outlives the load.

use std::io;
use std::path::{Path, PathBuf};

use aya::EbpfLoader;
use kc_common::kernel::KernelVersion;
use kc_common::plan::{ObjectPlan, BPF_F_NO_PREALLOC};

use crate::sys;

/// `BPF_FS_MAGIC` (statfs's f_type of a bpf file system).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// The host's usual bpf file system.
const SYS_FS_BPF: &str = "/sys/fs/bpf";

/// The pins of one load; dropping it removes them (and the private mount).
#[derive(Default)]
pub struct Handover {
    pins: Vec<PathBuf>,
    /// A bpf file system mounted for this load, unmounted and removed on drop.
    mounted: Option<PathBuf>,
}

impl Handover {
    /// Creates every map of `plan` that allocates as it goes on `kernel`, and points `loader`
    /// at them. Where that fails (no bpf file system can be had), the error says why: the
    /// caller loads the object's maps as they are.
    pub fn prepare<'a>(
        plan: &'a ObjectPlan,
        kernel: &KernelVersion,
        loader: &mut EbpfLoader<'a>,
    ) -> io::Result<Handover> {
        let mut handover = Handover::default();
        let maps: Vec<_> = plan
            .maps
            .iter()
            .filter(|m| m.allocates_as_it_goes(kernel))
            .collect();
        if maps.is_empty() {
            return Ok(handover);
        }
        let dir = handover.bpf_fs()?;
        let mut pinned = Vec::new();
        for m in maps {
            let fd = sys::create_map(
                m.map_type,
                m.key_size.unwrap_or(0),
                m.value_size.unwrap_or(0),
                m.max_entries,
                BPF_F_NO_PREALLOC,
                &m.name,
            )?;
            let path = dir.join(format!("kc-agent-{}-{}", std::process::id(), m.name));
            sys::pin(std::os::fd::AsFd::as_fd(&fd), &path)?;
            handover.pins.push(path.clone());
            pinned.push((m.name.as_str(), path));
        }
        // Only once every map is pinned: aya creates and pins a map whose path is missing, and
        // a failure above removes the pins made so far.
        for (name, path) in pinned {
            loader.map_pin_path(name, path);
        }
        Ok(handover)
    }

    /// A directory on a bpf file system: the host's, else one mounted here.
    fn bpf_fs(&mut self) -> io::Result<PathBuf> {
        if is_bpf_fs(Path::new(SYS_FS_BPF)) {
            return Ok(PathBuf::from(SYS_FS_BPF));
        }
        let dir = std::env::temp_dir().join(format!("kc-agent-bpffs-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let target = sys::c_path(&dir)?;
        // SAFETY: NUL-terminated strings that outlive the call; no data argument.
        let r = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                target.as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            let _ = std::fs::remove_dir(&dir);
            return Err(io::Error::new(
                e.kind(),
                format!("{SYS_FS_BPF} is no bpf file system, and mounting one failed: {e}"),
            ));
        }
        self.mounted = Some(dir.clone());
        Ok(dir)
    }
}

fn is_bpf_fs(path: &Path) -> bool {
    let Ok(p) = sys::c_path(path) else {
        return false;
    };
    // SAFETY: statfs only writes the struct it is given; all zeroes is a valid start.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `p` is NUL-terminated and `st` outlives the call.
    unsafe { libc::statfs(p.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

impl Drop for Handover {
    fn drop(&mut self) {
        for pin in &self.pins {
            let _ = std::fs::remove_file(pin);
        }
        if let Some(dir) = &self.mounted {
            if let Ok(target) = sys::c_path(dir) {
                // SAFETY: a NUL-terminated path that outlives the call.
                unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
            }
            let _ = std::fs::remove_dir(dir);
        }
    }
}
