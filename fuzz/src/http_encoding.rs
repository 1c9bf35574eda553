//! HTTP content coding: compressed request bodies through
//! `conduit_runner::encoding::decompress` under a size limit, and the
//! `Content-Encoding` / `Accept-Encoding` headers through `request_coding`
//! and `response_coding`.
//!
//! Input format: byte 0 picks the mode (bit 1 clear: a body; set: a header
//! value) and, for a body, the coding (bit 0: gzip or deflate); bytes 1–2
//! are the limit (little-endian, in bytes); the rest is the body or the
//! header value.
//!
//! Checks: no panic; the output never exceeds the limit; what inflates
//! compresses and inflates back to itself; a larger limit never changes an
//! answer that fit, turns a body that was too large into one that fits
//! only above the old limit, and keeps corrupt data corrupt; a refused
//! header is `Unsupported` with a bounded status message.

use crate::check;
use arbitrary::{Result, Unstructured};
use conduit_runner::ServeError;
use conduit_runner::encoding::{
    Coding, Inflate, compress, decompress, request_coding, response_coding,
};
use http::{HeaderMap, HeaderValue, header};

/// Tokens for mutations: the gzip and zlib magic, stored blocks.
pub const DICTIONARY: &[&[u8]] = &[
    b"\x1f\x8b\x08\x00",
    b"\x78\x9c",
    b"\x78\x01",
    b"\x01\x00\x00\xff\xff",
    b"\x00\x00\xff\xff",
    b"\x03\x00",
    b"gzip",
    b"deflate",
    b"identity",
    b";q=0",
    b", ",
];

/// An input in this target's format: a body of `coding` under `max`.
pub fn body_input(coding: Coding, max: u16, body: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(coding == Coding::Deflate)];
    out.extend_from_slice(&max.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// An input in this target's format: a header value.
pub fn header_input(value: &[u8]) -> Vec<u8> {
    let mut out = vec![2, 0, 0];
    out.extend_from_slice(value);
    out
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let [mode, lo, hi, rest @ ..] = data else {
        return;
    };
    if mode & 2 != 0 {
        return headers(rest);
    }
    let coding = if mode & 1 == 0 {
        Coding::Gzip
    } else {
        Coding::Deflate
    };
    let max = usize::from(u16::from_le_bytes([*lo, *hi]));
    let first = decompress(coding, rest, max);
    let bigger = decompress(coding, rest, max * 2 + 1);
    match &first {
        Ok(out) => {
            assert!(
                out.len() <= max,
                "{} bytes inflated under a limit of {max}",
                out.len()
            );
            assert_eq!(
                bigger.as_ref().ok(),
                Some(out),
                "a larger limit changed the body"
            );
            let packed = compress(coding, out);
            assert_eq!(
                decompress(coding, &packed, out.len()).as_ref(),
                Ok(out),
                "a body does not survive compress then decompress"
            );
        }
        Err(Inflate::TooLarge) => match &bigger {
            Ok(out) => assert!(
                out.len() > max,
                "refused as too large, yet {} bytes",
                out.len()
            ),
            Err(Inflate::TooLarge) => {}
            Err(Inflate::Corrupt(_)) => {}
        },
        Err(Inflate::Corrupt(m)) => {
            assert!(
                matches!(bigger, Err(Inflate::Corrupt(_))),
                "corrupt under {max}, not under {}",
                max * 2 + 1
            );
            let e = ServeError::InvalidInput(format!("request body: {m}"));
            check::serve_error("decompress", e);
        }
    }
}

fn headers(value: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return;
    };
    let mut map = HeaderMap::new();
    map.insert(header::CONTENT_ENCODING, value.clone());
    match request_coding(&map) {
        Ok(_) => {}
        Err(e) => {
            assert!(matches!(e, ServeError::Unsupported(_)), "{e:?}");
            check::serve_error("request_coding", e);
        }
    }
    map.insert(header::ACCEPT_ENCODING, value);
    let _ = response_coding(&map);
}

/// A structured input: a real compressed body (whole, cut or with a byte
/// changed), or a header value.
pub fn generate(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    if u.ratio(1, 5)? {
        let mut v = String::new();
        for i in 0..u.int_in_range(1..=3)? {
            if i > 0 {
                v.push_str(", ");
            }
            v.push_str(u.choose(&["gzip", "deflate", "br", "identity", "x-gzip", "*", "GZIP"])?);
            if u.ratio(1, 3)? {
                v.push_str(u.choose(&[";q=0", ";q=0.5", ";q=", ";q=nan", ";q=-1"])?);
            }
        }
        return Ok(header_input(v.as_bytes()));
    }
    let coding = if u.arbitrary()? {
        Coding::Gzip
    } else {
        Coding::Deflate
    };
    let body: Vec<u8> = match u.int_in_range(0..=2u8)? {
        0 => vec![b'a'; u.int_in_range(0..=20_000)?],
        1 => u.arbitrary()?,
        _ => br#"{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2]}]}"#.to_vec(),
    };
    let mut packed = compress(coding, &body);
    if u.ratio(1, 6)? && !packed.is_empty() {
        packed.truncate(u.int_in_range(0..=packed.len() - 1)?);
    } else if u.ratio(1, 6)? && !packed.is_empty() {
        let at = u.int_in_range(0..=packed.len() - 1)?;
        packed[at] ^= u.int_in_range(1..=255)?;
    } else if u.ratio(1, 8)? && coding == Coding::Gzip {
        // Concatenated members read as one stream.
        let again = packed.clone();
        packed.extend_from_slice(&again);
    }
    let max = if u.ratio(1, 3)? {
        u16::try_from(body.len()).unwrap_or(u16::MAX)
    } else {
        u.arbitrary()?
    };
    Ok(body_input(coding, max, &packed))
}
