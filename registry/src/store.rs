//! The metadata store: tenants, keys, manifests, tags and upload records in
//! one redb database (ACID, crash-safe, pure Rust). Values are JSON so a
//! field added later reads old records.
//!
//! Keys are strings built so that a prefix scan lists one tenant's objects:
//! names are ASCII from a small alphabet, and `\u{7f}` sorts after all of it.

use crate::{Manifest, RegistryError, Tenant};
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

type Table = TableDefinition<'static, &'static str, &'static [u8]>;

/// tenant name → [`Tenant`].
pub(crate) const TENANTS: Table = TableDefinition::new("tenants");
/// key hash → tenant name.
pub(crate) const KEYS: Table = TableDefinition::new("keys");
/// `tenant/name@version` → [`Manifest`].
pub(crate) const MANIFESTS: Table = TableDefinition::new("manifests");
/// `tenant/name:tag` → version.
pub(crate) const TAGS: Table = TableDefinition::new("tags");
/// `tenant|digest|name@version` → empty: resolve by content.
pub(crate) const BY_DIGEST: Table = TableDefinition::new("by_digest");
/// `tenant|digest` → [`UploadRecord`]: which tenant may use which blob.
pub(crate) const UPLOADS: Table = TableDefinition::new("uploads");

pub(crate) const ALL_TABLES: [Table; 6] = [TENANTS, KEYS, MANIFESTS, TAGS, BY_DIGEST, UPLOADS];

/// A blob a tenant has uploaded: grants it the right to reference and read
/// the blob, and counts against its stored-bytes limit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct UploadRecord {
    pub size: u64,
    pub uploaded_at: u64,
}

pub(crate) fn manifest_key(tenant: &str, name: &str, version: &str) -> String {
    format!("{tenant}/{name}@{version}")
}

pub(crate) fn tag_key(tenant: &str, name: &str, tag: &str) -> String {
    format!("{tenant}/{name}:{tag}")
}

pub(crate) fn digest_key(tenant: &str, digest: &str, reference: &str) -> String {
    format!("{tenant}|{digest}|{reference}")
}

pub(crate) fn upload_key(tenant: &str, digest: &str) -> String {
    format!("{tenant}|{digest}")
}

/// The end of a prefix scan starting at `prefix`.
pub(crate) fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{7f}")
}

pub(crate) fn get<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, RegistryError> {
    match table.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

pub(crate) fn put<T: Serialize>(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    key: &str,
    value: &T,
) -> Result<(), RegistryError> {
    table.insert(key, serde_json::to_vec(value)?.as_slice())?;
    Ok(())
}

/// Every `(key, value)` whose key starts with `prefix`, in key order,
/// starting after `after` when given.
pub(crate) fn scan(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
    after: Option<&str>,
) -> Result<Vec<(String, Vec<u8>)>, RegistryError> {
    let end = prefix_end(prefix);
    let mut out = Vec::new();
    for entry in table.range(prefix..end.as_str())? {
        let (k, v) = entry?;
        let k = k.value();
        if after.is_some_and(|a| k <= a) {
            continue;
        }
        out.push((k.to_string(), v.value().to_vec()));
    }
    Ok(out)
}

/// The tags of `tenant/name` that point at `version`.
pub(crate) fn tags_of(
    tags: &impl ReadableTable<&'static str, &'static [u8]>,
    tenant: &str,
    name: &str,
    version: &str,
) -> Result<Vec<String>, RegistryError> {
    let prefix = tag_key(tenant, name, "");
    Ok(scan(tags, &prefix, None)?
        .into_iter()
        .filter(|(_, v)| v == version.as_bytes())
        .map(|(k, _)| k[prefix.len()..].to_string())
        .collect())
}

/// Reads a manifest with its current tags.
pub(crate) fn manifest_with_tags(
    manifests: &impl ReadableTable<&'static str, &'static [u8]>,
    tags: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<Manifest>, RegistryError> {
    let Some(mut m) = get::<Manifest>(manifests, key)? else {
        return Ok(None);
    };
    m.tags = tags_of(tags, &m.tenant, &m.name, &m.version)?;
    Ok(Some(m))
}

/// The tenant owning `key_hash`, if any.
pub(crate) fn tenant_by_key(
    keys: &impl ReadableTable<&'static str, &'static [u8]>,
    tenants: &impl ReadableTable<&'static str, &'static [u8]>,
    key_hash: &str,
) -> Result<Option<Tenant>, RegistryError> {
    let Some(name) = keys.get(key_hash)? else {
        return Ok(None);
    };
    let name = String::from_utf8_lossy(name.value()).into_owned();
    get(tenants, &name)
}
