//! Decoding the blocks of an `.xz` stream on several threads at once. dpkg-deb compresses
//! with threads, so a package's data member is several independent blocks (6.1's -common
//! headers: 24, 24 and 9.5 MiB), and the decompression is the longest part of a cold fetch.
//! Each block is decoded as a stream of its own (the stream's header, the block, an index and
//! a footer for it alone), so liblzma still checks every block's integrity check and size.
//! A stream this does not understand (one block, padding, several streams, a block over
//! [`MAX_BLOCK`]) is decoded in sequence, as before.

use std::io::{self, Cursor, Read};
use std::sync::mpsc;
use std::thread::Scope;

const HEADER_MAGIC: &[u8; 6] = b"\xFD7zXZ\0";
const FOOTER_MAGIC: &[u8; 2] = b"YZ";
const HEADER_LEN: usize = 12;
const FOOTER_LEN: usize = 12;
/// The largest block (uncompressed) held in memory; each thread holds at most two.
const MAX_BLOCK: u64 = 64 << 20;

/// One block of a stream: where its bytes start, their length without the padding to four
/// bytes, and its uncompressed size (from the stream's index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    offset: usize,
    unpadded: u64,
    uncompressed: u64,
}

/// A reader of the decompressed bytes of `data` (one or more concatenated `.xz` streams):
/// its blocks decoded on `threads` threads of `scope` when it is one stream of several
/// blocks, else decoded in sequence.
pub fn decoder<'s>(
    scope: &'s Scope<'s, '_>,
    data: &'s [u8],
    threads: usize,
) -> Box<dyn Read + Send + 's> {
    match blocks(data) {
        Some(blocks) if blocks.len() > 1 && threads > 1 => {
            Box::new(ParallelBlocks::spawn(scope, data, blocks, threads))
        }
        _ => Box::new(xz2::read::XzDecoder::new_multi_decoder(Cursor::new(data))),
    }
}

/// The blocks of `data` when it is exactly one stream, without padding, whose footer and
/// index are intact.
pub fn blocks(data: &[u8]) -> Option<Vec<Block>> {
    if data.len() < HEADER_LEN + FOOTER_LEN || &data[..6] != HEADER_MAGIC {
        return None;
    }
    let footer = &data[data.len() - FOOTER_LEN..];
    if &footer[10..] != FOOTER_MAGIC
        || footer[8..10] != data[6..8]
        || crc32(&footer[4..10]) != le32(&footer[..4])
    {
        return None;
    }
    let index_len = (le32(&footer[4..8]) as usize + 1) * 4;
    let index_start = data.len().checked_sub(FOOTER_LEN + index_len)?;
    if index_start < HEADER_LEN {
        return None;
    }
    let index = &data[index_start..data.len() - FOOTER_LEN];
    let crc_at = index.len() - 4;
    if index[0] != 0 || crc32(&index[..crc_at]) != le32(&index[crc_at..]) {
        return None;
    }
    let mut pos = 1;
    let count = varint(&index[..crc_at], &mut pos)?;
    let mut out = Vec::new();
    let mut offset = HEADER_LEN;
    for _ in 0..count {
        let unpadded = varint(&index[..crc_at], &mut pos)?;
        let uncompressed = varint(&index[..crc_at], &mut pos)?;
        if uncompressed > MAX_BLOCK {
            return None;
        }
        out.push(Block {
            offset,
            unpadded,
            uncompressed,
        });
        offset = offset.checked_add(usize::try_from(padded(unpadded)).ok()?)?;
    }
    // The blocks end where the index starts, and the index holds nothing but padding after
    // its records.
    if offset != index_start || index[pos..crc_at].iter().any(|&b| b != 0) {
        return None;
    }
    Some(out)
}

/// A stream of `block` alone: `data`'s stream header, the block, an index of one record and a
/// footer.
fn single_block_stream(data: &[u8], block: &Block) -> Vec<u8> {
    let end = block.offset + padded(block.unpadded) as usize;
    let mut s = Vec::with_capacity(end - block.offset + HEADER_LEN + FOOTER_LEN + 32);
    s.extend_from_slice(&data[..HEADER_LEN]);
    s.extend_from_slice(&data[block.offset..end]);
    let mut index = vec![0u8];
    for v in [1, block.unpadded, block.uncompressed] {
        put_varint(&mut index, v);
    }
    while index.len() % 4 != 0 {
        index.push(0);
    }
    index.extend_from_slice(&crc32(&index).to_le_bytes());
    let mut flags = ((index.len() / 4 - 1) as u32).to_le_bytes().to_vec();
    flags.extend_from_slice(&data[6..8]);
    s.extend_from_slice(&index);
    s.extend_from_slice(&crc32(&flags).to_le_bytes());
    s.extend_from_slice(&flags);
    s.extend_from_slice(FOOTER_MAGIC);
    s
}

fn decode_block(data: &[u8], block: &Block) -> io::Result<Vec<u8>> {
    let stream = single_block_stream(data, block);
    let mut out = Vec::with_capacity(block.uncompressed as usize);
    // One more byte than the index promises: a block that holds more is caught.
    xz2::read::XzDecoder::new(&stream[..])
        .take(block.uncompressed + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 != block.uncompressed {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "holds {} bytes where the index says {}",
                out.len(),
                block.uncompressed
            ),
        ));
    }
    Ok(out)
}

/// Reads the blocks in order; thread `t` decodes blocks `t`, `t + threads`, ... and hands
/// each over when the reader asks for it (one decoded block waiting per thread).
struct ParallelBlocks {
    handoffs: Vec<mpsc::Receiver<io::Result<Vec<u8>>>>,
    next: usize,
    count: usize,
    current: Cursor<Vec<u8>>,
}

impl ParallelBlocks {
    fn spawn<'s>(
        scope: &'s Scope<'s, '_>,
        data: &'s [u8],
        blocks: Vec<Block>,
        threads: usize,
    ) -> Self {
        let count = blocks.len();
        let threads = threads.min(count);
        let blocks = std::sync::Arc::new(blocks);
        let handoffs = (0..threads)
            .map(|t| {
                let (tx, rx) = mpsc::sync_channel(1);
                let blocks = blocks.clone();
                scope.spawn(move || {
                    for i in (t..blocks.len()).step_by(threads) {
                        let decoded = decode_block(data, &blocks[i]).map_err(|e| {
                            io::Error::new(e.kind(), format!("xz block {} of {count}: {e}", i + 1))
                        });
                        let failed = decoded.is_err();
                        // The reader was dropped (its consumer stopped): stop too.
                        if tx.send(decoded).is_err() || failed {
                            return;
                        }
                    }
                });
                rx
            })
            .collect();
        Self {
            handoffs,
            next: 0,
            count,
            current: Cursor::new(Vec::new()),
        }
    }
}

impl Read for ParallelBlocks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() || self.next == self.count {
                return Ok(n);
            }
            let from = &self.handoffs[self.next % self.handoffs.len()];
            let block = from.recv().map_err(|_| {
                io::Error::new(io::ErrorKind::BrokenPipe, "an xz decoding thread stopped")
            })??;
            self.current = Cursor::new(block);
            self.next += 1;
        }
    }
}

fn padded(unpadded: u64) -> u64 {
    unpadded.div_ceil(4) * 4
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn crc32(b: &[u8]) -> u32 {
    let mut h = flate2::Crc::new();
    h.update(b);
    h.sum()
}

/// xz's multibyte integer: seven bits a byte, least significant first, at most nine bytes.
fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..9 {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // A zero continuation byte is not the shortest form: not xz's.
            return (i == 0 || byte != 0).then_some(v);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// About 1 MiB that compresses, but not to nothing.
    fn sample() -> Vec<u8> {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        (0..(1 << 20))
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 3 == 0 {
                    (x % 16) as u8
                } else {
                    b'a' + (i % 7) as u8
                }
            })
            .collect()
    }

    /// `data` compressed in blocks of `block_size` (as dpkg-deb's threaded xz does).
    fn multi_block(data: &[u8], block_size: u64) -> Vec<u8> {
        let stream = xz2::stream::MtStreamBuilder::new()
            .threads(2)
            .block_size(block_size)
            .preset(1)
            .encoder()
            .unwrap();
        let mut w = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn decode_all(data: &[u8], threads: usize) -> io::Result<Vec<u8>> {
        std::thread::scope(|s| {
            let mut out = Vec::new();
            decoder(s, data, threads).read_to_end(&mut out)?;
            Ok(out)
        })
    }

    #[test]
    fn the_blocks_of_a_threaded_stream_decode_in_parallel_to_the_same_bytes() {
        let plain = sample();
        let xz = multi_block(&plain, 200 << 10);
        let found = blocks(&xz).unwrap();
        assert_eq!(found.len(), 6, "{found:?}");
        assert_eq!(
            found.iter().map(|b| b.uncompressed).sum::<u64>(),
            plain.len() as u64
        );
        for threads in [1, 2, 3, 8] {
            assert_eq!(
                decode_all(&xz, threads).unwrap(),
                plain,
                "{threads} threads"
            );
        }
        // A one-block stream (what a single-threaded xz writes) decodes in sequence.
        let mut w = xz2::write::XzEncoder::new(Vec::new(), 1);
        w.write_all(&plain).unwrap();
        let one = w.finish().unwrap();
        assert_eq!(blocks(&one).map(|b| b.len()), Some(1));
        assert_eq!(decode_all(&one, 2).unwrap(), plain);
    }

    #[test]
    fn a_damaged_block_is_named_and_a_damaged_index_falls_back_to_the_sequential_decoder() {
        let plain = sample();
        let xz = multi_block(&plain, 200 << 10);
        let found = blocks(&xz).unwrap();
        // A byte inside block 3's compressed data.
        let mut bad = xz.clone();
        bad[found[2].offset + 100] ^= 0x55;
        let e = decode_all(&bad, 2).unwrap_err().to_string();
        assert!(e.contains("xz block 3 of 6"), "{e}");
        // A damaged index: not parsed, so the sequential decoder reads it, and refuses it.
        let mut bad = xz.clone();
        let at = bad.len() - FOOTER_LEN - 6;
        bad[at] ^= 0x01;
        assert!(blocks(&bad).is_none());
        assert!(decode_all(&bad, 2).is_err());
        // Cut short.
        assert!(blocks(&xz[..xz.len() - 1]).is_none());
        assert!(decode_all(&xz[..xz.len() / 2], 2).is_err());
    }

    #[test]
    fn one_block_alone_is_a_valid_stream_and_an_oversized_one_is_left_to_the_sequence() {
        let plain = sample();
        let xz = multi_block(&plain, 200 << 10);
        let first = blocks(&xz).unwrap()[0];
        let alone = single_block_stream(&xz, &first);
        assert_eq!(blocks(&alone).unwrap().len(), 1);
        let mut out = Vec::new();
        xz2::read::XzDecoder::new(&alone[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, plain[..first.uncompressed as usize]);
        // An index that claims a block bigger than the bound is not trusted with memory.
        let huge = Block {
            uncompressed: MAX_BLOCK + 1,
            ..first
        };
        assert!(blocks(&single_block_stream(&xz, &huge)).is_none());
    }

    #[test]
    fn xz_integers_read_as_the_format_writes_them() {
        let mut index = Vec::new();
        for v in [0, 127, 128, 300, u64::MAX >> 1] {
            put_varint(&mut index, v);
        }
        let mut pos = 0;
        for v in [0, 127, 128, 300, u64::MAX >> 1] {
            assert_eq!(varint(&index, &mut pos), Some(v));
        }
        // Not the shortest form, or longer than nine bytes: refused.
        assert_eq!(varint(&[0x80, 0x00], &mut 0), None);
        assert_eq!(varint(&[0xff; 10], &mut 0), None);
    }
}
