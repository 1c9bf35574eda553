//! Names, versions, tags and references, parsed once at the boundary.

use crate::{Digest, RegistryError};
use semver::Version;
use std::fmt;

const MAX_NAME: usize = 128;

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
            "{what} `{s}` is longer than {max} characters"
        )));
    }
    if let Some((_, c)) = s.char_indices().find(|&(i, c)| !ok(i, c)) {
        return Err(RegistryError::InvalidArgument(format!(
            "{what} `{s}` has an invalid character {c:?}"
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
/// starting with a letter or digit, at most 128 characters.
///
/// # Errors
/// [`RegistryError::InvalidArgument`] naming the problem.
pub fn check_name(name: &str) -> Result<(), RegistryError> {
    check("module name", name, MAX_NAME, |i, c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || (i > 0 && matches!(c, '-' | '_' | '.'))
    })
}

/// Checks a tag: letters, digits, `-`, `_` and `.`, starting with a letter,
/// digit or `_`, at most 128 characters.
///
/// # Errors
/// [`RegistryError::InvalidArgument`] naming the problem.
pub fn check_tag(tag: &str) -> Result<(), RegistryError> {
    check("tag", tag, MAX_NAME, |i, c| {
        c.is_ascii_alphanumeric() || c == '_' || (i > 0 && matches!(c, '-' | '.'))
    })
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
            "version `{s}` is not a semantic version (like 1.2.3): {e}"
        ))
    })?;
    if !v.build.is_empty() {
        return Err(RegistryError::InvalidArgument(format!(
            "version `{s}` has build metadata (`+{}`); use a pre-release or a new version",
            v.build
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
    /// `blake3:<hex>`: the module with this content.
    Digest(Digest),
}

impl Reference {
    /// Parses `name`, `name@version`, `name:tag` or `blake3:<hex>`, optionally
    /// prefixed with `tenant/`. Returns the tenant prefix, if any, alongside.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgument`] naming the problem.
    pub fn parse(s: &str) -> Result<(Option<&str>, Self), RegistryError> {
        if s.starts_with("blake3:") {
            let d = s
                .parse()
                .map_err(|e| RegistryError::InvalidArgument(format!("{e}")))?;
            return Ok((None, Self::Digest(d)));
        }
        let (tenant, rest) = match s.split_once('/') {
            Some((t, rest)) => {
                check_tenant(t)?;
                (Some(t), rest)
            }
            None => (None, s),
        };
        let reference = if let Some((name, version)) = rest.split_once('@') {
            check_name(name)?;
            Self::Version {
                name: name.to_string(),
                version: parse_version(version)?,
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
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Version { name, version } => write!(f, "{name}@{version}"),
            Self::Tag { name, tag } => write!(f, "{name}:{tag}"),
            Self::Digest(d) => write!(f, "{d}"),
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
            "tok@1.0.0@2",
            "tök",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(check_name(&"a".repeat(129)).is_err());
        assert!(check_tenant("acme-corp").is_ok());
        assert!(check_tenant("acme_corp").is_err());
    }
}
