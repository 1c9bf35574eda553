//! The hash of the static vocabulary tables.
//!
//! Shared verbatim by `build.rs` (which lays the tables out) and the tokenizer (which
//! probes them), so both always agree.

/// The FNV-1a offset basis: the hash of no bytes.
pub const FNV_OFFSET: u32 = 0x811c_9dc5;

/// Extends the FNV-1a hash `h` by one byte.
#[inline]
pub const fn fnv1a_step(h: u32, b: u8) -> u32 {
    (h ^ b as u32).wrapping_mul(0x0100_0193)
}

/// 32-bit FNV-1a over `bytes`.
#[inline]
#[allow(dead_code)] // Used by `build.rs` and the tests.
pub fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h = fnv1a_step(h, b);
    }
    h
}
