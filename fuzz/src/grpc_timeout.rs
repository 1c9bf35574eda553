//! The `grpc-timeout` request header, as the runner and the gateway read it
//! (a client's deadline, shortening the tenant's).
//!
//! Input format: the header value.
//!
//! Checks, against the gRPC specification (`TimeoutValue TimeoutUnit`: at
//! most 8 ASCII digits, then one of `H M S m u n`): no panic; a value in
//! that form is read as exactly its duration; any other value is refused
//! (surrounding blanks may be tolerated).
//!
//! The parser is `conduit_runner::grpc::parse_grpc_timeout`; its metadata
//! wrapper `grpc_timeout` must refuse what it refuses with `InvalidInput`
//! and a bounded status message.

use crate::check;
use arbitrary::{Result, Unstructured};
use std::time::Duration;

/// Tokens for mutations.
pub const DICTIONARY: &[&[u8]] = &[
    b"H",
    b"M",
    b"S",
    b"m",
    b"u",
    b"n",
    b"99999999",
    b"100000000",
    b"+",
    b"-",
    b" ",
    b"0",
];

/// The runner's reading of a header value (`None`: refused).
pub fn parse(value: &str) -> Option<Duration> {
    conduit_runner::grpc::parse_grpc_timeout(value).ok()
}

/// What the gRPC specification reads `value` as.
pub fn spec(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let got = parse(value);
    let wanted = spec(value);
    match (wanted, got) {
        (Some(w), g) => assert_eq!(g, Some(w), "grpc-timeout `{value}` is {w:?}, read as {g:?}"),
        (None, Some(g)) => assert_eq!(
            spec(value.trim()),
            Some(g),
            "grpc-timeout `{value}` is not a timeout, but was read as {g:?}"
        ),
        (None, None) => {}
    }
    // The metadata wrapper: the same answer, or a bounded refusal.
    if let Ok(v) = tonic::metadata::MetadataValue::try_from(value) {
        let mut map = tonic::metadata::MetadataMap::new();
        map.insert("grpc-timeout", v);
        match conduit_runner::grpc::grpc_timeout(&map) {
            Ok(t) => assert_eq!(t, got, "grpc_timeout and parse_grpc_timeout disagree"),
            Err(e) => {
                assert_eq!(
                    got, None,
                    "grpc_timeout refuses what parse_grpc_timeout reads"
                );
                check::serve_error("grpc_timeout", e);
            }
        }
    }
}

/// A structured header value: digits (up to and past 8) and a unit, with
/// now and then a sign, a blank or a second unit.
pub fn generate(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let mut s = String::new();
    if u.ratio(1, 10)? {
        s.push_str(u.choose(&["+", "-", " ", "0x"])?);
    }
    let digits = u.int_in_range(0..=20)?;
    for _ in 0..digits {
        s.push(char::from(b'0' + u.int_in_range(0..=9)?));
    }
    if u.ratio(1, 10)? {
        s.push_str(u.choose(&[".5", " ", "_", "e3"])?);
    }
    s.push(*u.choose(&['H', 'M', 'S', 'm', 'u', 'n', 'h', 's', 'x', ' '])?);
    if u.ratio(1, 20)? {
        s.push(*u.choose(&['S', ' ', '\t'])?);
    }
    Ok(s.into_bytes())
}
