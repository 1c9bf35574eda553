//! Byte mutations of corpus entries, as libFuzzer's default mutators do
//! them, without coverage feedback: bit flips, byte and integer overwrites
//! (binary and ASCII), truncation, erasure, duplication, insertion of
//! random bytes or dictionary tokens, and splicing with another entry.

use fastrand::Rng;

/// Integers that break parsers: zero, one, signs, the edges of every width.
pub const INTERESTING: &[i128] = &[
    0,
    1,
    -1,
    2,
    16,
    17,
    127,
    128,
    255,
    256,
    1024,
    4096,
    32767,
    32768,
    65535,
    65536,
    1 << 20,
    i32::MAX as i128,
    1 << 31,
    u32::MAX as i128,
    1 << 32,
    i64::MAX as i128,
    1 << 63,
    u64::MAX as i128,
    i8::MIN as i128,
    i16::MIN as i128,
    i32::MIN as i128,
    i64::MIN as i128,
];

/// Numbers as text, for the decoders of text formats (JSON, TOML, headers).
pub const INTERESTING_TEXT: &[&str] = &[
    "0",
    "-0",
    "-1",
    "1e308",
    "-1e308",
    "1e-400",
    "1.5",
    "0.1",
    "255",
    "256",
    "65536",
    "2147483648",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "99999999",
    "100000000",
    "nan",
    "inf",
];

/// `input` with 1 to 4 stacked mutations, at most `max_len` bytes long.
/// `other` is a second entry to splice with; `dictionary` the target's
/// tokens.
pub fn mutate(
    rng: &mut Rng,
    input: &[u8],
    other: &[u8],
    dictionary: &[&[u8]],
    max_len: usize,
) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..rng.usize(1..=4) {
        mutate_once(rng, &mut data, other, dictionary);
    }
    data.truncate(max_len);
    data
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], dictionary: &[&[u8]]) {
    let len = data.len();
    match rng.u8(0..13) {
        // Flip one bit.
        0 if len > 0 => {
            let at = rng.usize(0..len);
            data[at] ^= 1 << rng.u8(0..8);
        }
        // Overwrite a byte with a random or a structural one.
        1 if len > 0 => {
            let at = rng.usize(0..len);
            data[at] = if rng.bool() {
                rng.u8(..)
            } else {
                *pick(rng, b"\0\x01\x7f\x80\xff\"\\{}[],:.=@/\n -0123456789")
            };
        }
        // Overwrite with an interesting binary integer (1, 2, 4 or 8 bytes).
        2 if len > 0 => {
            let width = *pick(rng, &[1usize, 2, 4, 8]);
            // Two's complement in the low `width` bytes, either byte order.
            let v = *pick(rng, INTERESTING) as u64;
            let (le, be) = (v.to_le_bytes(), v.to_be_bytes());
            let bytes = if rng.bool() {
                &le[..width]
            } else {
                &be[8 - width..]
            };
            let at = rng.usize(0..len);
            let end = (at + width).min(len);
            data[at..end].copy_from_slice(&bytes[..end - at]);
        }
        // Replace a run of ASCII digits with an interesting number.
        3 => {
            let starts: Vec<usize> = (0..len)
                .filter(|&i| data[i].is_ascii_digit() && (i == 0 || !data[i - 1].is_ascii_digit()))
                .collect();
            let text = pick(rng, INTERESTING_TEXT).as_bytes();
            if starts.is_empty() {
                let at = rng.usize(0..=len);
                data.splice(at..at, text.iter().copied());
            } else {
                let start = *pick(rng, &starts);
                let mut end = start;
                while end < len && (data[end].is_ascii_digit() || data[end] == b'.') {
                    end += 1;
                }
                data.splice(start..end, text.iter().copied());
            }
        }
        // Truncate.
        4 if len > 0 => data.truncate(rng.usize(0..len)),
        // Erase a chunk.
        5 if len > 0 => {
            let (at, n) = chunk(rng, len);
            data.drain(at..at + n);
        }
        // Duplicate a chunk in place.
        6 if len > 0 => {
            let (at, n) = chunk(rng, len);
            let copy = data[at..at + n].to_vec();
            let to = rng.usize(0..=len);
            data.splice(to..to, copy);
        }
        // Insert random bytes.
        7 => {
            let at = rng.usize(0..=len);
            let n = rng.usize(1..=8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            data.splice(at..at, bytes);
        }
        // Insert or overwrite with a dictionary token.
        8 | 9 if !dictionary.is_empty() => {
            let token = *pick(rng, dictionary);
            let at = rng.usize(0..=len);
            if rng.bool() || at + token.len() > len {
                data.splice(at..at, token.iter().copied());
            } else {
                data[at..at + token.len()].copy_from_slice(token);
            }
        }
        // Splice: a prefix of this entry, a suffix of the other.
        10 if !other.is_empty() => {
            let keep = rng.usize(0..=len);
            let from = rng.usize(0..other.len());
            data.truncate(keep);
            data.extend_from_slice(&other[from..]);
        }
        // Insert a chunk of the other entry.
        11 if !other.is_empty() => {
            let (from, n) = chunk(rng, other.len());
            let at = rng.usize(0..=len);
            data.splice(at..at, other[from..from + n].iter().copied());
        }
        // Repeat a chunk many times (deep nesting, long names, big counts).
        12 if len > 0 => {
            let (at, n) = chunk(rng, len.min(16));
            let copy = data[at..at + n].to_vec();
            let times = rng.usize(2..=200);
            let to = rng.usize(0..=len);
            data.splice(to..to, copy.iter().copied().cycle().take(n * times));
        }
        // Nothing applied (an empty input): grow it.
        _ => data.push(rng.u8(..)),
    }
}

/// A random `(start, len)` within `len` bytes, `len` ≥ 1, biased to short.
fn chunk(rng: &mut Rng, len: usize) -> (usize, usize) {
    let max = if rng.u8(0..4) == 0 { len } else { len.min(16) };
    let n = rng.usize(1..=max);
    (rng.usize(0..=len - n), n)
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.usize(0..items.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_within_the_length_limit() {
        let mut rng = Rng::with_seed(1);
        let dict: &[&[u8]] = &[b"\"inputs\"", b"BYTES"];
        for _ in 0..10_000 {
            let out = mutate(&mut rng, b"{\"a\": 12}", b"xyz", dict, 64);
            assert!(out.len() <= 64);
        }
        // An empty input still mutates into something.
        assert!((0..100).any(|_| !mutate(&mut rng, b"", b"", &[], 64).is_empty()));
    }
}
