//! HTTP content codings: `Content-Encoding: gzip | deflate` request bodies
//! (decompressed under the request size limit) and `Accept-Encoding`
//! answers, as `tritonclient.http` sends and reads them
//! (`request_compression_algorithm`, `response_compression_algorithm`).
//! The codecs are flate2's; gRPC compression is tonic's own.

use super::ServeError;
use axum::http::{HeaderMap, header};
use flate2::Compression;
use std::io::{Read, Write};

/// A content coding this server reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// RFC 1952 gzip (concatenated members are read as one stream).
    Gzip,
    /// HTTP's `deflate`: the zlib format (RFC 1950); a raw RFC 1951 stream,
    /// which some clients send instead, is read too.
    Deflate,
}

impl Coding {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
        }
    }
}

/// Why a compressed body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum Inflate {
    /// It decompresses to more than the limit.
    TooLarge,
    /// It is not valid data of its coding.
    Corrupt(String),
}

/// The coding of a request body (`None`: identity).
///
/// # Errors
/// [`ServeError::Unsupported`] for any coding but gzip, deflate, identity.
pub fn request_coding(headers: &HeaderMap) -> Result<Option<Coding>, ServeError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or("?").trim();
    match value.to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(None),
        "gzip" | "x-gzip" => Ok(Some(Coding::Gzip)),
        "deflate" => Ok(Some(Coding::Deflate)),
        _ => Err(ServeError::Unsupported(format!(
            "Content-Encoding `{}` is not supported; send gzip, deflate or no encoding",
            conduit_types::clip(value)
        ))),
    }
}

/// The coding to answer with, from `Accept-Encoding`: gzip, else deflate,
/// when the client lists it with a non-zero quality; else none.
pub fn response_coding(headers: &HeaderMap) -> Option<Coding> {
    let mut accepted = Vec::new();
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        for item in value.to_str().unwrap_or("").split(',') {
            let mut parts = item.split(';').map(str::trim);
            let name = parts.next().unwrap_or("").to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if !refused {
                accepted.push(name);
            }
        }
    }
    [Coding::Gzip, Coding::Deflate]
        .into_iter()
        .find(|c| accepted.iter().any(|a| a == c.as_str()))
}

/// `data` decompressed, refused as soon as it passes `max` bytes (a small
/// body that inflates without end never takes more than `max` + 1 bytes).
///
/// # Errors
/// [`Inflate::TooLarge`] past `max`; [`Inflate::Corrupt`] for bad data.
pub fn decompress(coding: Coding, data: &[u8], max: usize) -> Result<Vec<u8>, Inflate> {
    let reader: Box<dyn Read + '_> = match coding {
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(data)),
        Coding::Deflate if is_zlib(data) => Box::new(flate2::read::ZlibDecoder::new(data)),
        Coding::Deflate => Box::new(flate2::read::DeflateDecoder::new(data)),
    };
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::with_capacity(data.len().saturating_mul(2).min(max));
    reader
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| Inflate::Corrupt(format!("{} body: {e}", coding.as_str())))?;
    if out.len() > max {
        return Err(Inflate::TooLarge);
    }
    Ok(out)
}

/// Whether `data` starts with a zlib header (RFC 1950: method 8, check bits).
fn is_zlib(data: &[u8]) -> bool {
    match data {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

/// `data` compressed with `coding` (flate2's fast level: tensors are large
/// and the answer should not wait long on the CPU).
pub fn compress(coding: Coding, data: &[u8]) -> Vec<u8> {
    let out = Vec::with_capacity(data.len() / 2 + 64);
    let level = Compression::fast();
    let written = match coding {
        Coding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(out, level);
            e.write_all(data).and_then(|()| e.finish())
        }
        Coding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(out, level);
            e.write_all(data).and_then(|()| e.finish())
        }
    };
    // Writing into a Vec cannot fail.
    written.expect("compressing into memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn round_trips_both_codings() {
        let data = b"{\"inputs\": []} and some more bytes".repeat(50);
        for coding in [Coding::Gzip, Coding::Deflate] {
            let packed = compress(coding, &data);
            assert!(packed.len() < data.len());
            assert_eq!(decompress(coding, &packed, data.len()).unwrap(), data);
        }
        // A raw deflate stream (no zlib header) is read as deflate too.
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), Compression::fast());
        raw.write_all(&data).unwrap();
        let raw = raw.finish().unwrap();
        assert_eq!(decompress(Coding::Deflate, &raw, data.len()).unwrap(), data);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 8 << 20];
        let bomb = compress(Coding::Gzip, &zeros);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        assert_eq!(
            decompress(Coding::Gzip, &bomb, 1 << 20),
            Err(Inflate::TooLarge)
        );
        assert_eq!(
            decompress(Coding::Gzip, &bomb, 8 << 20).unwrap().len(),
            8 << 20
        );
        let Err(Inflate::Corrupt(m)) = decompress(Coding::Gzip, b"not gzip", 100) else {
            panic!("corrupt data accepted");
        };
        assert!(m.starts_with("gzip body: "), "{m}");
    }

    #[test]
    fn headers_choose_the_coding() {
        assert_eq!(request_coding(&HeaderMap::new()).unwrap(), None);
        let h = headers(header::CONTENT_ENCODING, "GZIP");
        assert_eq!(request_coding(&h).unwrap(), Some(Coding::Gzip));
        let h = headers(header::CONTENT_ENCODING, "br");
        let e = request_coding(&h).unwrap_err();
        assert!(e.to_string().contains("`br` is not supported"), "{e}");
        let h = headers(header::ACCEPT_ENCODING, "deflate");
        assert_eq!(response_coding(&h), Some(Coding::Deflate));
        let h = headers(header::ACCEPT_ENCODING, "br, deflate;q=0.5, gzip");
        assert_eq!(response_coding(&h), Some(Coding::Gzip));
        let h = headers(header::ACCEPT_ENCODING, "gzip;q=0, identity");
        assert_eq!(response_coding(&h), None);
    }
}
