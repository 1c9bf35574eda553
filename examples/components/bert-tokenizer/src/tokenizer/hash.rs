//! The hash of the static vocabulary tables.
//!
//! Shared verbatim by `build.rs` (which lays the tables out) and the tokenizer (which
//! probes them), so both always agree.

/// 32-bit FNV-1a over `bytes`.
#[inline]
pub fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}
