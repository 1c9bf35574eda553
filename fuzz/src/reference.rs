//! Registry names and references: `[tenant/]name[@version|:tag|@blake3:…]`
//! and `blake3:<hex>` (`Reference::parse`), KServe's model name and
//! `model_version` (`Reference::in_module`), names, tags, tenants,
//! versions and digests on their own; and the `authorization` header every
//! call carries (`bearer_key`).
//!
//! Input format: text; a first line break splits it into a model name and
//! a `model_version` for `in_module` (the whole text goes to the others).
//!
//! Checks: no panic; errors are `InvalidArgument` with a bounded status
//! message; what parses prints back (`Display`) as text that parses to the
//! same thing, with and without its tenant; names, tags and versions that
//! pass their checks are made of the characters and lengths the checks
//! document; a bearer key is the header's one non-blank word after
//! `Bearer`.

use crate::check;
use arbitrary::{Result, Unstructured};
use conduit_registry::{
    Digest, Reference, RegistryError, bearer_key, check_name, check_tag, check_tenant,
    check_user_tag, parse_version, split_tenant,
};

/// Tokens for mutations.
pub const DICTIONARY: &[&[u8]] = &[
    b"blake3:",
    b"@",
    b":",
    b"/",
    b"@blake3:",
    b"latest",
    b"1.0.0",
    b"-rc.1",
    b"+build",
    b"v1.0.0",
    b"acme/",
    b"0000000000000000000000000000000000000000000000000000000000000000",
    b"\n",
    b"Bearer ",
    b"cdk_",
];

/// Runs one input.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let s = text.as_ref();
    parse(s);
    let (name, version) = s.split_once('\n').unwrap_or((s, ""));
    in_module(name, version);
    checks(s);
    bearer(s);
}

fn bearer(header: &str) {
    match bearer_key(Some(header)) {
        Ok(key) => {
            assert!(!key.is_empty() && !key.contains(char::is_whitespace));
            let (scheme, rest) = header.trim().split_once(' ').expect("a scheme and a key");
            assert!(
                scheme.eq_ignore_ascii_case("bearer"),
                "scheme `{scheme}` accepted"
            );
            assert_eq!(rest.trim(), key);
        }
        Err(e) => {
            assert!(matches!(e, RegistryError::Unauthenticated(_)), "{e:?}");
            check::bounded(&tonic::Status::from(e), "bearer_key");
        }
    }
}

fn parse(s: &str) {
    let (tenant, r) = match Reference::parse(s) {
        Ok(parsed) => parsed,
        Err(e) => return check::registry_error("Reference::parse", e),
    };
    if let Some(name) = r.name() {
        assert!(
            check_name(name).is_ok(),
            "parsed name `{name}` fails check_name"
        );
    }
    match &r {
        Reference::Tag { tag, .. } => {
            assert!(check_tag(tag).is_ok(), "parsed tag `{tag}` fails check_tag");
        }
        Reference::Version { version, .. } => assert!(version.build.is_empty()),
        _ => {}
    }
    let shown = r.to_string();
    let again = Reference::parse(&shown)
        .unwrap_or_else(|e| panic!("`{s}` parsed as `{shown}`, which does not parse: {e}"));
    assert_eq!(
        again,
        (None, r.clone()),
        "`{s}` parsed as `{shown}`, which parses differently"
    );
    if let Some(t) = tenant {
        assert!(check_tenant(t).is_ok());
        let full = format!("{t}/{shown}");
        assert_eq!(
            Reference::parse(&full).ok(),
            Some((Some(t), r)),
            "`{s}` parsed, but `{full}` parses differently"
        );
    }
}

fn in_module(name: &str, version: &str) {
    let r = match Reference::in_module(name, version) {
        Ok(r) => r,
        Err(e) => return check::registry_error("Reference::in_module", e),
    };
    assert_eq!(r.name(), Some(name));
    let version_text = match &r {
        Reference::Version { version, .. } => version.to_string(),
        Reference::Tag { tag, .. } => tag.clone(),
        Reference::Content { digest, .. } => digest.to_string(),
        Reference::Digest(_) => panic!("in_module gave a bare digest"),
    };
    assert_eq!(
        Reference::in_module(name, &version_text).ok(),
        Some(r.clone()),
        "in_module(`{name}`, `{version}`) is not in_module(`{name}`, `{version_text}`)"
    );
    let shown = r.to_string();
    assert_eq!(
        Reference::parse(&shown).ok(),
        Some((None, r)),
        "in_module(`{name}`, `{version}`) prints as `{shown}`, which parses differently"
    );
}

fn checks(s: &str) {
    let name_ok = |max: usize, ok: &dyn Fn(usize, char) -> bool| {
        !s.is_empty() && s.len() <= max && s.char_indices().all(|(i, c)| ok(i, c))
    };
    let result = check_name(s);
    assert_eq!(
        result.is_ok(),
        s != "blake3"
            && name_ok(128, &|i, c| c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || (i > 0 && matches!(c, '-' | '_' | '.'))),
        "check_name(`{s}`) disagrees with its documentation"
    );
    if let Err(e) = result {
        check::registry_error("check_name", e);
    }
    let result = check_tenant(s);
    assert_eq!(
        result.is_ok(),
        name_ok(63, &|i, c| c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || (i > 0 && c == '-')),
        "check_tenant(`{s}`) disagrees with its documentation"
    );
    if let Err(e) = result {
        check::registry_error("check_tenant", e);
    }
    match check_tag(s) {
        Ok(()) => assert!(name_ok(128, &|i, c| c.is_ascii_alphanumeric()
            || c == '_'
            || (i > 0 && matches!(c, '-' | '.')))),
        Err(e) => check::registry_error("check_tag", e),
    }
    if let Err(e) = check_user_tag(s) {
        check::registry_error("check_user_tag", e);
    } else {
        assert_ne!(s, "latest");
    }
    match parse_version(s) {
        Ok(v) => {
            assert!(v.build.is_empty());
            assert_eq!(parse_version(&v.to_string()).ok(), Some(v));
        }
        Err(e) => check::registry_error("parse_version", e),
    }
    match split_tenant(s) {
        Ok((Some(t), rest)) => assert_eq!(format!("{t}/{rest}"), s),
        Ok((None, rest)) => assert_eq!(rest, s),
        Err(e) => check::registry_error("split_tenant", e),
    }
    if let Ok(d) = s.parse::<Digest>() {
        assert_eq!(d.to_string().parse::<Digest>().ok(), Some(d));
        assert!(s.eq_ignore_ascii_case(&d.to_string()));
    }
}

/// A structured reference: tenant, name, and a version, tag or digest, each
/// valid most of the time.
pub fn generate(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    if u.ratio(1, 10)? {
        let scheme = *u.choose(&["Bearer ", "bearer  ", "Basic ", "", " Bearer", "Bearer\t"])?;
        let key = *u.choose(&["cdk_0123abcd", "", "a b", " cdk_x ", "cdk_\u{a0}x"])?;
        return Ok(format!("{scheme}{key}").into_bytes());
    }
    let mut s = String::new();
    if u.ratio(1, 4)? {
        s.push_str(u.choose(&["acme/", "default/", "Acme/", "/", "a-/", "-a/"])?);
    }
    let name = match u.int_in_range(0..=9u8)? {
        0 => u.arbitrary::<String>()?,
        1 => "n".repeat(u.int_in_range(120..=140)?),
        _ => u
            .choose(&["tok", "bert-tokenizer", "minilm", "a.b_c", "x", "Tok", ".x"])?
            .to_string(),
    };
    if u.ratio(1, 8)? {
        s.clear();
        s.push_str(&digest_text(u)?);
    } else {
        s.push_str(&name);
        match u.int_in_range(0..=4u8)? {
            0 => {}
            1 => {
                s.push('@');
                s.push_str(&version_text(u)?);
            }
            2 => {
                s.push(':');
                s.push_str(u.choose(&["prod", "latest", "v1.0.0", "1.0", "_x", "-x", ""])?);
            }
            3 => {
                s.push('@');
                s.push_str(&digest_text(u)?);
            }
            _ => {
                s.push('\n');
                s.push_str(&match u.int_in_range(0..=3u8)? {
                    0 => version_text(u)?,
                    1 => digest_text(u)?,
                    2 => String::new(),
                    _ => u.choose(&["prod", "latest", "v2", "x y"])?.to_string(),
                });
            }
        }
    }
    Ok(s.into_bytes())
}

fn version_text(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=5u8)? {
        0 => u.arbitrary::<String>()?,
        1 => format!(
            "{}.{}.{}",
            u.arbitrary::<u64>()?,
            u.arbitrary::<u8>()?,
            u.arbitrary::<u16>()?
        ),
        _ => u
            .choose(&[
                "1.0.0",
                "1.2.3-rc.1",
                "1.0.0+build",
                "01.0.0",
                "1.0",
                "18446744073709551616.0.0",
                "1.0.0-",
                "1.0.0-α",
            ])?
            .to_string(),
    })
}

fn digest_text(u: &mut Unstructured<'_>) -> Result<String> {
    let d = Digest::of(&u.arbitrary::<[u8; 4]>()?).to_string();
    Ok(match u.int_in_range(0..=5u8)? {
        0 => d.to_uppercase(),
        1 => d[..d.len() - 1].to_string(),
        2 => format!("{d}0"),
        3 => format!("blake3:{}", "a".repeat(u.int_in_range(0..=2000)?)),
        _ => d,
    })
}
