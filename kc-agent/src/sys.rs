//! The few bpf(2) commands aya does not offer on a map of any value size: lookup, update,
//! delete and walk by raw bytes (our counter structs differ in size per collector), and a
//! program's run statistics (recursion_misses); and a kprobe attached by address through the
//! kprobe PMU, which aya attaches by name only.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use kc_common::report::MapReads;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
/// The kernel's ENOTSUPP (not in libc): a map type without batch operations.
const ENOTSUPP: i32 = 524;

/// `union bpf_attr` as the map element commands read it.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` as the `BPF_MAP_*_BATCH` commands read it.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// `union bpf_attr` as BPF_MAP_CREATE reads it, up to the map's name.
#[repr(C)]
#[derive(Default)]
struct CreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `union bpf_attr` as BPF_OBJ_PIN reads it.
#[repr(C)]
#[derive(Default)]
struct PinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// A new map without BTF (a hash of plain keys and values needs none), named `name` (its
/// first 15 bytes, as every loader truncates it).
pub fn create_map(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut attr = CreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags,
        ..CreateAttr::default()
    };
    for (to, from) in attr.map_name.iter_mut().zip(name.bytes().take(15)) {
        *to = from;
    }
    let fd = bpf_value(BPF_MAP_CREATE, &mut attr)?;
    // SAFETY: the kernel just returned this descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `path` as the kernel reads one.
pub fn c_path(path: &std::path::Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other(format!("{}: a path with a NUL byte", path.display())))
}

/// Pins the BPF object `fd` at `path` (on a bpf file system).
pub fn pin(fd: BorrowedFd<'_>, path: &std::path::Path) -> io::Result<()> {
    let path = c_path(path)?;
    let mut attr = PinAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        ..PinAttr::default()
    };
    bpf(BPF_OBJ_PIN, &mut attr)
}

/// `union bpf_attr` as BPF_OBJ_GET_INFO_BY_FD reads it.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<()> {
    bpf_value(cmd, attr).map(drop)
}

/// [`bpf`], returning what the command returns (a new descriptor for the creating ones).
fn bpf_value<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialized bpf_attr prefix of the size passed; the kernel
    // reads and writes only within it and the buffers its fields point to, which the callers
    // size as the map or info requires.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn elem(
    cmd: libc::c_long,
    map: BorrowedFd<'_>,
    key: Option<&[u8]>,
    value: u64,
    flags: u64,
) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.map_or(0, |k| k.as_ptr() as u64),
        value,
        flags,
        ..MapElemAttr::default()
    };
    bpf(cmd, &mut attr)
}

/// The value of `key` into `value` (sized for the map: per-CPU maps hold one 8-byte aligned
/// slot per possible CPU).
pub fn lookup(map: impl AsFd, key: &[u8], value: &mut [u8]) -> io::Result<()> {
    elem(
        BPF_MAP_LOOKUP_ELEM,
        map.as_fd(),
        Some(key),
        value.as_mut_ptr() as u64,
        0,
    )
}

pub fn update(map: impl AsFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    elem(
        BPF_MAP_UPDATE_ELEM,
        map.as_fd(),
        Some(key),
        value.as_ptr() as u64,
        0,
    )
}

pub fn delete(map: impl AsFd, key: &[u8]) -> io::Result<()> {
    elem(BPF_MAP_DELETE_ELEM, map.as_fd(), Some(key), 0, 0)
}

/// Deletes every key of `keys` (each `key_size` bytes) that is in the map: [`MapReads::Batch`]:
/// in batches (`BPF_MAP_DELETE_BATCH`, 5.6+) where the kernel has them, else one at a time.
/// Returns how many were deleted; a key no longer there (an LRU eviction meanwhile) is passed
/// over.
pub fn delete_all(
    map: BorrowedFd<'_>,
    keys: &[u8],
    key_size: usize,
    reads: MapReads,
) -> io::Result<usize> {
    let one_by_one = || {
        keys.chunks_exact(key_size)
            .filter(|k| delete(map, k).is_ok())
            .count()
    };
    if reads == MapReads::PerKey {
        return Ok(one_by_one());
    }
    let total = keys.len() / key_size;
    let (mut at, mut deleted) = (0, 0);
    while at < total {
        let rest = &keys[at * key_size..total * key_size];
        let mut attr = BatchAttr {
            keys: rest.as_ptr() as u64,
            count: (total - at) as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let r = bpf(BPF_MAP_DELETE_BATCH, &mut attr);
        // The kernel stops at the first key it cannot delete; `count` is how many it did.
        let done = (attr.count as usize).min(total - at);
        (at, deleted) = (at + done, deleted + done);
        match r {
            Ok(()) => {}
            // That key is gone already: on with the next.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => at += 1,
            // Refused at the first call: nothing was deleted.
            Err(e) if at == 0 && no_batches(&e) => return Ok(one_by_one()),
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// The key after `key` (the first with None) into `next`; false at the end.
pub fn next_key(map: impl AsFd, key: Option<&[u8]>, next: &mut [u8]) -> io::Result<bool> {
    match elem(
        BPF_MAP_GET_NEXT_KEY,
        map.as_fd(),
        key,
        next.as_mut_ptr() as u64,
        0,
    ) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes every entry of a hash map of `key_size`-byte keys.
pub fn empty(map: BorrowedFd<'_>, key_size: usize) -> io::Result<()> {
    let mut key = vec![0u8; key_size];
    // A deletion can reorder the walk: start again from the first key each time.
    while next_key(map, None, &mut key)? {
        match delete(map, &key) {
            // Deleted meanwhile (an LRU map's eviction): the next walk skips it.
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Runs of program `prog` the kernel skipped because one was already running on that CPU.
pub fn recursion_misses(prog: impl AsFd) -> io::Result<u64> {
    // SAFETY: bpf_prog_info is plain old data; all zeroes is its empty value.
    let mut info: aya_obj::generated::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr {
        bpf_fd: prog.as_fd().as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: &mut info as *mut _ as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info.recursion_misses)
}

/// The bytes of one value slot of a map of `value_size`-byte values: a per-CPU map's value is
/// one such 8-byte-aligned slot per possible CPU.
pub fn value_slot(value_size: u32) -> usize {
    (value_size as usize).div_ceil(8) * 8
}

/// `BPF_MAP_TYPE_PERCPU_HASH`, `_PERCPU_ARRAY`, `_LRU_PERCPU_HASH`: one value slot per CPU.
pub const PERCPU_MAP_TYPES: [u32; 3] = [5, 6, 10];

/// Visits every (key, value) of a map of `key_size`-byte keys and `value_size`-byte values (a
/// per-CPU map's value: every CPU's slot), in the kernel's order; an entry deleted during the
/// walk is skipped. [`MapReads::Batch`]: in batches (`BPF_MAP_LOOKUP_BATCH`, 5.6+: one call
/// per thousand entries) where the kernel has them for the map, else one key at a time.
pub fn walk(
    map: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    reads: MapReads,
    visit: &mut dyn FnMut(&[u8], &[u8]),
) -> io::Result<()> {
    if reads == MapReads::PerKey {
        return walk_by_key(map, key_size, value_size, visit);
    }
    match walk_batched(map, key_size, value_size, visit) {
        // Refused at the first call, before any entry was visited.
        Err(Batched::Refused) => walk_by_key(map, key_size, value_size, visit),
        Err(Batched::Failed(e)) => Err(e),
        Ok(()) => Ok(()),
    }
}

/// [`walk`]'s entries, collected.
pub fn entries(
    map: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    reads: MapReads,
) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    walk(map, key_size, value_size, reads, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()))
    })?;
    Ok(out)
}

/// The error by which a kernel says it has no batch operations (before 5.6), or none for
/// this map type.
fn no_batches(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP)
    )
}

/// [`walk`], one `BPF_MAP_GET_NEXT_KEY` and one lookup per entry.
fn walk_by_key(
    map: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    visit: &mut dyn FnMut(&[u8], &[u8]),
) -> io::Result<()> {
    let (mut key, mut next) = (vec![0u8; key_size], vec![0u8; key_size]);
    let mut value = vec![0u8; value_size];
    let mut first = true;
    while next_key(map, (!first).then_some(&key[..]), &mut next)? {
        first = false;
        std::mem::swap(&mut key, &mut next);
        if lookup(map, &key, &mut value).is_ok() {
            visit(&key, &value);
        }
    }
    Ok(())
}

/// Entries asked for per batch call at first (a hash map's batch never splits a bucket: a
/// bucket longer than this is asked for again with room for twice as many).
const BATCH: usize = 1024;

/// How a batched walk failed.
enum Batched {
    /// The kernel has no batches for the map: its first call refused, nothing visited.
    Refused,
    Failed(io::Error),
}

/// [`walk`] through `BPF_MAP_LOOKUP_BATCH`.
fn walk_batched(
    map: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    visit: &mut dyn FnMut(&[u8], &[u8]),
) -> Result<(), Batched> {
    let mut room = BATCH;
    // The hash maps' batch token is a bucket index (u32); 8 bytes hold any map's.
    let (mut token_in, mut token_out) = ([0u8; 8], [0u8; 8]);
    let (mut keys, mut values) = (vec![0u8; room * key_size], vec![0u8; room * value_size]);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { token_in.as_ptr() as u64 },
            out_batch: token_out.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: room as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let r = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let got = (attr.count as usize).min(room);
        for (k, v) in keys
            .chunks_exact(key_size)
            .zip(values.chunks_exact(value_size))
            .take(got)
        {
            visit(k, v);
        }
        match r {
            Ok(()) => {
                token_in = token_out;
                first = false;
            }
            // The last batch.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            // A bucket longer than `room`: nothing was copied; again with more room.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && got == 0 => {
                room *= 2;
                (keys, values) = (vec![0u8; room * key_size], vec![0u8; room * value_size]);
            }
            Err(e) if first && got == 0 && no_batches(&e) => return Err(Batched::Refused),
            Err(e) => return Err(Batched::Failed(e)),
        }
    }
}

/// `PERF_EVENT_IOC_ENABLE`, `PERF_EVENT_IOC_SET_BPF` (`_IO('$', 0)`, `_IOW('$', 8, u32)`).
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// The kprobe PMU as `/sys/bus/event_source/devices/kprobe/` describes it: its perf event
/// `type` and the config bit of a return probe (`format/retprobe`: `config:0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KprobePmu {
    pub event_type: u32,
    pub retprobe_bit: u32,
}

impl KprobePmu {
    /// The running kernel's, or why it has none.
    pub fn read() -> io::Result<KprobePmu> {
        let read = |file: &str| -> io::Result<u32> {
            let path = format!("/sys/bus/event_source/devices/kprobe/{file}");
            let text = std::fs::read_to_string(&path)?;
            text.trim()
                .trim_start_matches("config:")
                .parse()
                .map_err(|_| io::Error::other(format!("{path}: {:?} is not a number", text.trim())))
        };
        Ok(KprobePmu {
            event_type: read("type")?,
            retprobe_bit: read("format/retprobe")?,
        })
    }
}

/// Attaches program `prog` as a kprobe (or kretprobe) at kernel address `address` through
/// the kprobe PMU: the kernel looks no name up. Closing the returned event detaches it.
pub fn kprobe_at(
    prog: BorrowedFd<'_>,
    pmu: KprobePmu,
    address: u64,
    retprobe: bool,
) -> io::Result<OwnedFd> {
    // config1 (the function's name: none) and config2 (its address) at bytes 56 and 64.
    let mut attr = perf_event_attr(
        pmu.event_type,
        if retprobe {
            1u64 << pmu.retprobe_bit
        } else {
            0
        },
    );
    attr[8] = address;
    perf_event_with_program(&attr, prog)
}

/// Attaches program `prog` to the tracepoint event `id` (`events/<group>/<name>/id` in
/// tracefs). Closing the returned event detaches it.
pub fn tracepoint_event(prog: BorrowedFd<'_>, id: u64) -> io::Result<OwnedFd> {
    const PERF_TYPE_TRACEPOINT: u32 = 2;
    perf_event_with_program(&perf_event_attr(PERF_TYPE_TRACEPOINT, id), prog)
}

/// `struct perf_event_attr` (PERF_ATTR_SIZE_VER8, 128 bytes; older kernels take it, the
/// fields they lack being zero) with its type, size and config.
fn perf_event_attr(event_type: u32, config: u64) -> [u64; 16] {
    let mut attr = [0u64; 16];
    attr[0] = u64::from(event_type) | (128u64 << 32);
    attr[1] = config;
    attr
}

/// Opens the perf event `attr` on every process and runs `prog` on it.
fn perf_event_with_program(attr: &[u64; 16], prog: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a perf_event_attr of the size it declares; the kernel reads it only.
    // pid -1 and cpu 0: every process, as a kprobe or tracepoint event is.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            -1 as libc::c_int,
            0 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to this process alone.
    let event = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    for (request, arg) in [
        (PERF_EVENT_IOC_SET_BPF, prog.as_raw_fd() as libc::c_ulong),
        (PERF_EVENT_IOC_ENABLE, 0),
    ] {
        // SAFETY: both requests take an integer argument, not a pointer.
        if unsafe { libc::ioctl(event.as_raw_fd(), request as _, arg) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(event)
}

/// The number on a `name:` line of an fdinfo file (`memlock:\t65536`).
pub fn fdinfo_field(fdinfo: &str, name: &str) -> Option<u64> {
    fdinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_fdinfo_field_by_name() {
        let info = "pos:\t0\nflags:\t02000002\nmap_type:\t6\nmemlock:\t65536\nmap_id:\t12\n";
        assert_eq!(super::fdinfo_field(info, "memlock"), Some(65536));
        assert_eq!(super::fdinfo_field(info, "map_id"), Some(12));
        assert_eq!(super::fdinfo_field(info, "frozen"), None);
        assert_eq!(super::fdinfo_field("memlock:\tlots\n", "memlock"), None);
    }

    /// A map of `map_type` with 8-byte keys and 16-byte values, filled with `rows` entries.
    fn filled_map(map_type: u32, rows: u64) -> std::os::fd::OwnedFd {
        let map = super::create_map(map_type, 8, 16, 8192, 0, "kc_test")
            .unwrap_or_else(|e| panic!("BPF_MAP_CREATE: {e}"));
        let cpus = crate::possible_cpus().unwrap();
        let slots = if map_type == 5 { cpus } else { 1 };
        for k in 0..rows {
            let value: Vec<u8> = (0..2 * slots as u64)
                .flat_map(|i| (k * 100 + i).to_ne_bytes())
                .collect();
            super::update(&map, &k.to_ne_bytes(), &value).unwrap();
        }
        map
    }

    #[test]
    fn batched_and_per_key_reads_agree_needs_root() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            kc_common::skip::skip(
                "batched_and_per_key_reads_agree_needs_root",
                "creating BPF maps needs root",
            );
            return;
        }
        use kc_common::report::MapReads;
        use std::os::fd::AsFd;
        let cpus = crate::possible_cpus().unwrap();
        // Hash, per-CPU hash, LRU hash; more rows than one batch holds.
        for (map_type, slots) in [(1, 1), (5, cpus), (9, 1)] {
            let map = filled_map(map_type, 3000);
            let read = |reads| {
                let mut rows = super::entries(map.as_fd(), 8, 16 * slots, reads).unwrap();
                rows.sort();
                rows
            };
            let (batched, by_key) = (read(MapReads::Batch), read(MapReads::PerKey));
            assert_eq!(batched.len(), 3000, "map type {map_type}");
            assert_eq!(batched, by_key, "map type {map_type}");
        }
        // Deleting in batches: keys already gone are passed over, the rest all deleted.
        let map = filled_map(9, 3000);
        let mut keys: Vec<u8> = (0..2000u64).flat_map(|k| k.to_ne_bytes()).collect();
        keys.extend(7_000_000u64.to_ne_bytes()); // never inserted
        keys.extend(2500u64.to_ne_bytes());
        assert_eq!(
            super::delete_all(map.as_fd(), &keys, 8, MapReads::Batch).unwrap(),
            2001
        );
        let left = super::entries(map.as_fd(), 8, 16, MapReads::Batch).unwrap();
        assert_eq!(left.len(), 999);
        assert!(left.iter().all(|(k, _)| {
            let k = u64::from_ne_bytes(k[..].try_into().unwrap());
            (2000..3000).contains(&k) && k != 2500
        }));
    }
}
