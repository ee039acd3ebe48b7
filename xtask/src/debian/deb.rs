//! `.deb` files: an `ar` archive whose `data.tar.{xz,zst,gz}` member holds the files.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use kc_common::unpack::{unpack_tar, UnpackError, UnpackStats};
use thiserror::Error;

const AR_MAGIC: &[u8; 8] = b"!<arch>\n";
const AR_HEADER_LEN: usize = 60;

#[derive(Debug, Error)]
pub enum DebError {
    #[error("{file}: not a .deb: it does not start with the ar magic `!<arch>` (got {got:?})")]
    NotAr { file: String, got: String },
    #[error("{file}: truncated or malformed ar archive at byte {offset}: {reason}")]
    BadAr {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error("{file}: no data.tar member in the .deb (members: {members})")]
    NoData { file: String, members: String },
    #[error("{file}: data member {member} uses a compression this tool does not read (xz, zst, gz and none are read)")]
    Compression { file: String, member: String },
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: io::Error,
    },
}

/// An `ar` member header.
#[derive(Debug, PartialEq, Eq)]
struct Member {
    name: String,
    size: u64,
}

fn parse_header(file: &str, offset: u64, h: &[u8; AR_HEADER_LEN]) -> Result<Member, DebError> {
    let bad = |reason: String| DebError::BadAr {
        file: file.to_string(),
        offset,
        reason,
    };
    if &h[58..60] != b"`\n" {
        return Err(bad(
            "member header does not end with the ar terminator".into()
        ));
    }
    let name = std::str::from_utf8(&h[..16])
        .map_err(|_| bad("member name is not text".into()))?
        .trim_end()
        .trim_end_matches('/')
        .to_string();
    let size_text =
        std::str::from_utf8(&h[48..58]).map_err(|_| bad("member size is not text".into()))?;
    let size = size_text.trim().parse::<u64>().map_err(|_| {
        bad(format!(
            "member size {:?} is not a number",
            size_text.trim()
        ))
    })?;
    Ok(Member { name, size })
}

/// Streams the `data.tar.*` member of `deb` into `dest` (see [`unpack_tar`] for the rules).
pub fn extract_data(
    deb: &Path,
    dest: &Path,
    keep: &dyn Fn(&Path) -> bool,
) -> Result<UnpackStats, DebError> {
    let file_name = deb.display().to_string();
    let io_err = |source| DebError::Io {
        file: file_name.clone(),
        source,
    };
    let total = deb.metadata().map_err(io_err)?.len();
    let mut r = BufReader::with_capacity(1 << 20, File::open(deb).map_err(io_err)?);
    let mut magic = [0u8; 8];
    let got = read_fully(&mut r, &mut magic).map_err(io_err)?;
    if &magic[..got] != AR_MAGIC {
        return Err(DebError::NotAr {
            file: file_name,
            got: String::from_utf8_lossy(&magic[..got]).into_owned(),
        });
    }
    let mut offset = AR_MAGIC.len() as u64;
    let mut seen = Vec::new();
    loop {
        let mut header = [0u8; AR_HEADER_LEN];
        let n = read_fully(&mut r, &mut header).map_err(io_err)?;
        if n == 0 {
            return Err(DebError::NoData {
                file: file_name,
                members: seen.join(", "),
            });
        }
        if n < AR_HEADER_LEN {
            return Err(DebError::BadAr {
                file: file_name,
                offset,
                reason: format!("member header cut after {n} of {AR_HEADER_LEN} bytes"),
            });
        }
        let member = parse_header(&file_name, offset, &header)?;
        let data_start = offset + AR_HEADER_LEN as u64;
        if data_start + member.size > total {
            return Err(DebError::BadAr {
                file: file_name,
                offset,
                reason: format!(
                    "member {} claims {} bytes but the file ends {} bytes after its header",
                    member.name,
                    member.size,
                    total - data_start
                ),
            });
        }
        if let Some(compression) = member.name.strip_prefix("data.tar") {
            let mut body = (&mut r).take(member.size);
            let archive = format!("{file_name}:{}", member.name);
            if compression == ".xz" {
                // In memory (its size was checked against the file's above), so that its
                // blocks decode on every core at once.
                let mut data = Vec::with_capacity(member.size as usize);
                body.read_to_end(&mut data).map_err(io_err)?;
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                return std::thread::scope(|s| {
                    let decoder = super::xz::decoder(s, &data, threads);
                    Ok(unpack_tar(&archive, decoder, dest, keep)?)
                });
            }
            let decoder: Box<dyn Read + Send> = match compression {
                ".zst" => Box::new(zstd::stream::read::Decoder::new(body).map_err(io_err)?),
                ".gz" => Box::new(flate2::read::GzDecoder::new(body)),
                "" => Box::new(body),
                _ => {
                    return Err(DebError::Compression {
                        file: file_name,
                        member: member.name,
                    })
                }
            };
            return Ok(unpack_tar(&archive, decoder, dest, keep)?);
        }
        // Skip this member and its padding to an even offset.
        let skip = member.size + (member.size % 2);
        io::copy(&mut (&mut r).take(skip), &mut io::sink()).map_err(io_err)?;
        offset = data_start + skip;
        seen.push(member.name);
    }
}

fn read_fully(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Writes a minimal `.deb` (for tests and benchmarks' fixtures).
#[cfg(test)]
pub fn build_deb(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = AR_MAGIC.to_vec();
    for (name, data) in members {
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            format!("{name}/"),
            0,
            0,
            0,
            100644,
            data.len()
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn data_tar_xz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&tar).unwrap();
        xz.finish().unwrap()
    }

    fn write_tmp(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn extracts_data_member() {
        let data = data_tar_xz(&[("usr/src/x/a.h", b"#define A 1\n")]);
        let deb = write_tmp(&build_deb(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.xz", b"ignored"),
            ("data.tar.xz", &data),
        ]));
        let dest = tempfile::tempdir().unwrap();
        let stats = extract_data(deb.path(), dest.path(), &|_| true).unwrap();
        assert_eq!(stats.files, 1);
        assert_eq!(
            std::fs::read_to_string(dest.path().join("usr/src/x/a.h")).unwrap(),
            "#define A 1\n"
        );
    }

    #[test]
    fn not_an_ar_archive() {
        for bytes in [
            &b""[..],
            b"\x7fELF\x02\x01\x01",
            b"PK\x03\x04 zip file here",
        ] {
            let f = write_tmp(bytes);
            let err = extract_data(f.path(), Path::new("/nonexistent"), &|_| true).unwrap_err();
            assert!(matches!(err, DebError::NotAr { .. }), "{err}");
            assert!(err.to_string().contains("not a .deb"));
        }
    }

    #[test]
    fn truncated_and_malformed_archives() {
        let data = data_tar_xz(&[("a", b"1")]);
        let good = build_deb(&[("debian-binary", b"2.0\n"), ("data.tar.xz", &data)]);
        // Cut inside the second header, and inside the data member.
        for cut in [8 + 60 + 4 + 10, good.len() - 5] {
            let f = write_tmp(&good[..cut]);
            let err =
                extract_data(f.path(), tempfile::tempdir().unwrap().path(), &|_| true).unwrap_err();
            assert!(matches!(err, DebError::BadAr { .. }), "cut {cut}: {err}");
            assert!(err.to_string().contains("byte 72"), "{err}");
        }
        let mut bad = good.clone();
        bad[8 + 58] = b'X';
        let f = write_tmp(&bad);
        let err = extract_data(f.path(), Path::new("/nonexistent"), &|_| true).unwrap_err();
        assert!(err.to_string().contains("terminator"), "{err}");
        let f = write_tmp(&build_deb(&[("debian-binary", b"2.0\n")]));
        let err = extract_data(f.path(), Path::new("/nonexistent"), &|_| true).unwrap_err();
        assert!(matches!(err, DebError::NoData { .. }), "{err}");
        let f = write_tmp(&build_deb(&[("data.tar.lz4", b"x")]));
        let err = extract_data(f.path(), Path::new("/nonexistent"), &|_| true).unwrap_err();
        assert!(matches!(err, DebError::Compression { .. }), "{err}");
    }

    #[test]
    fn corrupt_compressed_data() {
        let mut data = data_tar_xz(&[("a", &[1u8; 10000])]);
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        let f = write_tmp(&build_deb(&[("data.tar.xz", &data)]));
        let err =
            extract_data(f.path(), tempfile::tempdir().unwrap().path(), &|_| true).unwrap_err();
        assert!(err.to_string().contains("data.tar.xz"), "{err}");
    }

    #[test]
    fn tar_slip_inside_a_deb_is_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let f = write_tmp(&build_deb(&[("data.tar", &tar)]));
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("d");
        std::fs::create_dir(&dest).unwrap();
        let err = extract_data(f.path(), &dest, &|_| true).unwrap_err();
        assert!(err.to_string().contains("`..`"), "{err}");
        assert!(!outer.path().join("escape").exists());
    }
}
