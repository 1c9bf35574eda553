//! Names, versions, tags and references, parsed once at the boundary.

use crate::{Digest, RegistryError};
use semver::Version;
use std::fmt;

const MAX_NAME: usize = 128;
/// Longest piece of caller input an error message repeats.
const MAX_SHOWN: usize = 64;

/// `s` as an error message may repeat it: at most 64 characters, the rest
/// replaced by `…`, so a message never echoes unbounded input.
pub fn shown(s: &str) -> String {
    match s.char_indices().nth(MAX_SHOWN) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

fn check(
    what: &str,
    s: &str,
    max: usize,
    ok: impl Fn(usize, char) -> bool,
) -> Result<(), RegistryError> {
    if s.is_empty() {
        return Err(RegistryError::InvalidArgument(format!("{what} is empty")));
    }
    if s.len() > max {
        return Err(RegistryError::InvalidArgument(format!(
            "{what} `{}` is longer than {max} characters",
            shown(s)
        )));
    }
    if let Some((_, c)) = s.char_indices().find(|&(i, c)| !ok(i, c)) {
        return Err(RegistryError::InvalidArgument(format!(
            "{what} `{}` has an invalid character {c:?}",
            shown(s)
        )));
    }
    Ok(())
}

/// Checks a tenant name: lowercase letters, digits and `-`, starting with a
/// letter or digit, at most 63 characters.
///
/// # Errors
/// [`RegistryError::InvalidArgument`] naming the problem.
pub fn check_tenant(name: &str) -> Result<(), RegistryError> {
    check("tenant name", name, 63, |i, c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || (i > 0 && c == '-')
    })
}

/// Checks a module name: lowercase letters, digits, `-`, `_` and `.`,
/// starting with a letter or digit, at most 128 characters, and not
/// `blake3`: `blake3:<tag>` would read as a digest.
///
/// # Errors
/// [`RegistryError::InvalidArgument`] naming the problem.
pub fn check_name(name: &str) -> Result<(), RegistryError> {
    check("module name", name, MAX_NAME, |i, c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || (i > 0 && matches!(c, '-' | '_' | '.'))
    })?;
    if name == "blake3" {
        return Err(RegistryError::InvalidArgument(
            "module name `blake3` is reserved: `blake3:<hex>` names a digest".into(),
        ));
    }
    Ok(())
}

/// Checks a tag: letters, digits, `-`, `_` and `.`, starting with a letter,
/// digit or `_`, at most 128 characters, and not shaped like a version
/// (`1.0.0`, `v1.0.0-rc.1`): a reference must never mean a tag to one
/// command and a version to another.
///
/// # Errors
/// [`RegistryError::InvalidArgument`] naming the problem.
pub fn check_tag(tag: &str) -> Result<(), RegistryError> {
    check("tag", tag, MAX_NAME, |i, c| {
        c.is_ascii_alphanumeric() || c == '_' || (i > 0 && matches!(c, '-' | '.'))
    })?;
    let bare = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
    if Version::parse(bare).is_ok() {
        return Err(RegistryError::InvalidArgument(format!(
            "tag `{}` looks like a version; versions are given as `name@version`, tags need another name",
            shown(tag)
        )));
    }
    Ok(())
}

/// Checks a tag a user may set or remove: [`check_tag`], and not `latest`,
/// which the registry maintains itself (it always names the highest
/// release, or the highest pre-release while there is no release).
///
/// # Errors
/// [`RegistryError::InvalidArgument`] naming the problem.
pub fn check_user_tag(tag: &str) -> Result<(), RegistryError> {
    check_tag(tag)?;
    if tag == "latest" {
        return Err(RegistryError::InvalidArgument(
            "tag `latest` is maintained by the registry (it names the highest release); \
             it cannot be set or removed"
                .into(),
        ));
    }
    Ok(())
}

/// Splits an optional `tenant/` prefix off `s`, checking the tenant name.
///
/// # Errors
/// [`RegistryError::InvalidArgument`] for a bad tenant name.
pub fn split_tenant(s: &str) -> Result<(Option<&str>, &str), RegistryError> {
    match s.split_once('/') {
        Some((t, rest)) => {
            check_tenant(t)?;
            Ok((Some(t), rest))
        }
        None => Ok((None, s)),
    }
}

/// Parses a semantic version (`1.2.3`, `1.0.0-rc.1`); build metadata is
/// refused, since semver ignores it when comparing and two versions that
/// compare equal could not both be immutable.
///
/// # Errors
/// [`RegistryError::InvalidArgument`] naming the problem.
pub fn parse_version(s: &str) -> Result<Version, RegistryError> {
    let v = Version::parse(s).map_err(|e| {
        RegistryError::InvalidArgument(format!(
            "version `{}` is not a semantic version (like 1.2.3): {e}",
            shown(s)
        ))
    })?;
    if !v.build.is_empty() {
        return Err(RegistryError::InvalidArgument(format!(
            "version `{}` has build metadata; use a pre-release or a new version",
            shown(s)
        )));
    }
    Ok(v)
}

/// What a reference points at, within one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `name@version`.
    Version {
        /// Module name.
        name: String,
        /// Exact version.
        version: Version,
    },
    /// `name:tag`, or a bare `name` (tag `latest`).
    Tag {
        /// Module name.
        name: String,
        /// Tag.
        tag: String,
    },
    /// `blake3:<hex>`: the module with this content. When several versions
    /// hold it, lookups take the one registered first (stable: later pushes
    /// never change the answer); deletion refuses and names them.
    Digest(Digest),
    /// `name@blake3:<hex>`: the version of `name` with this content.
    Content {
        /// Module name.
        name: String,
        /// Its content.
        digest: Digest,
    },
}

impl Reference {
    /// Parses `name`, `name@version`, `name:tag`, `name@blake3:<hex>` or
    /// `blake3:<hex>`, optionally prefixed with `tenant/`. Returns the tenant
    /// prefix, if any, alongside.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgument`] naming the problem.
    pub fn parse(s: &str) -> Result<(Option<&str>, Self), RegistryError> {
        if s.starts_with("blake3:") {
            return Ok((None, Self::Digest(digest(s)?)));
        }
        let (tenant, rest) = split_tenant(s)?;
        let reference = if let Some((name, version)) = rest.split_once('@') {
            check_name(name)?;
            if version.starts_with("blake3:") {
                Self::Content {
                    name: name.to_string(),
                    digest: digest(version)?,
                }
            } else {
                Self::Version {
                    name: name.to_string(),
                    version: parse_version(version)?,
                }
            }
        } else if let Some((name, tag)) = rest.split_once(':') {
            check_name(name)?;
            check_tag(tag)?;
            Self::Tag {
                name: name.to_string(),
                tag: tag.to_string(),
            }
        } else {
            check_name(rest)?;
            Self::Tag {
                name: rest.to_string(),
                tag: "latest".to_string(),
            }
        };
        Ok((tenant, reference))
    }

    /// The reference KServe v2 callers give as a model name and a
    /// `model_version` field: empty (`latest`), a version, a tag or a
    /// digest — always within module `name`.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgument`] naming the problem.
    pub fn in_module(name: &str, version: &str) -> Result<Self, RegistryError> {
        check_name(name)?;
        let name = name.to_string();
        Ok(if version.is_empty() {
            Self::Tag {
                name,
                tag: "latest".into(),
            }
        } else if version.starts_with("blake3:") {
            Self::Content {
                name,
                digest: digest(version)?,
            }
        } else if let Ok(v) = parse_version(version) {
            Self::Version { name, version: v }
        } else {
            check_tag(version)?;
            Self::Tag {
                name,
                tag: version.to_string(),
            }
        })
    }

    /// The module name, when the reference has one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Version { name, .. } | Self::Tag { name, .. } | Self::Content { name, .. } => {
                Some(name)
            }
            Self::Digest(_) => None,
        }
    }
}

fn digest(s: &str) -> Result<Digest, RegistryError> {
    s.parse()
        .map_err(|e| RegistryError::InvalidArgument(format!("`{}` is not a digest: {e}", shown(s))))
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Version { name, version } => write!(f, "{name}@{version}"),
            Self::Tag { name, tag } => write!(f, "{name}:{tag}"),
            Self::Digest(d) => write!(f, "{d}"),
            Self::Content { name, digest } => write!(f, "{name}@{digest}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_reference_form() {
        let (t, r) = Reference::parse("tok@1.2.0").unwrap();
        assert_eq!(t, None);
        assert_eq!(r.to_string(), "tok@1.2.0");
        let (t, r) = Reference::parse("acme/tok:prod").unwrap();
        assert_eq!(t, Some("acme"));
        assert_eq!(r.to_string(), "tok:prod");
        assert_eq!(Reference::parse("tok").unwrap().1.to_string(), "tok:latest");
        let d = Digest::of(b"x");
        assert_eq!(
            Reference::parse(&d.to_string()).unwrap().1,
            Reference::Digest(d)
        );
    }

    #[test]
    fn version_shaped_tags_and_latest_are_refused() {
        for bad in ["1.0.0", "v1.0.0", "V2.1.3-rc.1", "0.0.1"] {
            let e = check_tag(bad).unwrap_err().to_string();
            assert!(e.contains("looks like a version"), "{bad}: {e}");
        }
        for good in ["prod", "1", "v1", "1.0", "stable-1.0"] {
            check_tag(good).unwrap();
        }
        assert!(check_user_tag("latest").is_err());
        check_tag("latest").unwrap();
    }

    #[test]
    fn digests_within_a_module() {
        let d = Digest::of(b"x");
        let (_, r) = Reference::parse(&format!("acme/ops@{d}")).unwrap();
        assert_eq!(
            r,
            Reference::Content {
                name: "ops".into(),
                digest: d
            }
        );
        assert_eq!(Reference::in_module("ops", &d.to_string()).unwrap(), r);
        assert_eq!(
            Reference::in_module("ops", "").unwrap().to_string(),
            "ops:latest"
        );
        assert_eq!(
            Reference::in_module("ops", "1.2.0").unwrap().to_string(),
            "ops@1.2.0"
        );
        assert_eq!(
            Reference::in_module("ops", "prod").unwrap().to_string(),
            "ops:prod"
        );
        assert!(Reference::in_module("ops", "v1.0.0").is_err());
    }

    #[test]
    fn rejects_bad_names_versions_and_tags() {
        for bad in [
            "",
            "Tok",
            "-tok",
            "tok@1",
            "tok@1.0",
            "tok@1.0.0+build",
            "tok@v1.0.0",
            "tok:",
            "tok:-x",
            "a/b/c",
            "ACME/tok",
            "tok name",
            "blake3:1234",
            "blake3",
            "acme/blake3",
            "tok@1.0.0@2",
            "tök",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(check_name(&"a".repeat(129)).is_err());
        let long = check_name(&"A".repeat(10_000)).unwrap_err().to_string();
        assert!(long.len() < 200, "{long}");
        assert!(check_tenant("acme-corp").is_ok());
        assert!(check_tenant("acme_corp").is_err());
    }
}
