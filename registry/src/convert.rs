//! Between the wire messages (`conduit_proto`) and the registry's own types.

use crate::{
    ExecutorHints, Kind, Manifest, RegistryError, Signature, Tenant, TenantLimits, TensorSpec,
};
use conduit_proto::registry::v1 as pb;

pub(crate) fn kind_to_pb(kind: Kind) -> pb::Kind {
    match kind {
        Kind::Component => pb::Kind::Component,
        Kind::Model => pb::Kind::Model,
        Kind::Pipeline => pb::Kind::Pipeline,
    }
}

/// `None` for KIND_UNSPECIFIED.
pub(crate) fn kind_from_pb(raw: i32) -> Result<Option<Kind>, RegistryError> {
    match pb::Kind::try_from(raw) {
        Ok(pb::Kind::Unspecified) => Ok(None),
        Ok(pb::Kind::Component) => Ok(Some(Kind::Component)),
        Ok(pb::Kind::Model) => Ok(Some(Kind::Model)),
        Ok(pb::Kind::Pipeline) => Ok(Some(Kind::Pipeline)),
        Err(_) => Err(RegistryError::InvalidArgument(format!(
            "unknown module kind {raw}"
        ))),
    }
}

fn spec_to_pb(s: &TensorSpec) -> pb::TensorSpec {
    pb::TensorSpec {
        name: s.name.clone(),
        datatype: s.datatype.clone(),
        shape: s.shape.clone(),
    }
}

fn spec_from_pb(s: pb::TensorSpec) -> TensorSpec {
    TensorSpec {
        name: s.name,
        datatype: s.datatype,
        shape: s.shape,
    }
}

pub(crate) fn hints_to_pb(h: &ExecutorHints) -> pb::ExecutorHints {
    pb::ExecutorHints {
        format: h.format.clone(),
        backend: h.backend.clone(),
        device: h.device.clone(),
        max_batch_size: h.max_batch_size,
        max_queue_delay_us: h.max_queue_delay_us,
        preferred_batch_sizes: h.preferred_batch_sizes.clone(),
        instances: h.instances,
        replicas: h.replicas,
        max_replicas: h.max_replicas,
        target_busy_percent: h.target_busy_percent,
        target_queue_ms: h.target_queue_ms,
        idle_seconds: h.idle_seconds,
    }
}

pub(crate) fn hints_from_pb(h: Option<pb::ExecutorHints>) -> ExecutorHints {
    let h = h.unwrap_or_default();
    ExecutorHints {
        format: h.format,
        backend: h.backend,
        device: h.device,
        max_batch_size: h.max_batch_size,
        max_queue_delay_us: h.max_queue_delay_us,
        preferred_batch_sizes: h.preferred_batch_sizes,
        instances: h.instances,
        replicas: h.replicas,
        max_replicas: h.max_replicas,
        target_busy_percent: h.target_busy_percent.min(100),
        target_queue_ms: h.target_queue_ms,
        idle_seconds: h.idle_seconds,
    }
}

pub(crate) fn manifest_to_pb(m: &Manifest) -> pb::Manifest {
    pb::Manifest {
        tenant: m.tenant.clone(),
        name: m.name.clone(),
        version: m.version.clone(),
        kind: kind_to_pb(m.kind) as i32,
        digest: m.digest.to_string(),
        size: m.size,
        signature: Some(pb::Signature {
            inputs: m.signature.inputs.iter().map(spec_to_pb).collect(),
            outputs: m.signature.outputs.iter().map(spec_to_pb).collect(),
        }),
        executor: Some(hints_to_pb(&m.executor)),
        world: m.world.clone(),
        references: m.references.clone(),
        created_at: m.created_at.clone(),
        created_by: m.created_by.clone(),
        tags: m.tags.clone(),
    }
}

/// A manifest received from a server.
pub(crate) fn manifest_from_pb(m: pb::Manifest) -> Result<Manifest, RegistryError> {
    let signature = m.signature.unwrap_or_default();
    Ok(Manifest {
        kind: kind_from_pb(m.kind)?
            .ok_or_else(|| RegistryError::InvalidArgument("manifest without a kind".into()))?,
        digest: m
            .digest
            .parse()
            .map_err(|e| RegistryError::InvalidArgument(format!("{e}")))?,
        tenant: m.tenant,
        name: m.name,
        version: m.version,
        size: m.size,
        signature: Signature {
            inputs: signature.inputs.into_iter().map(spec_from_pb).collect(),
            outputs: signature.outputs.into_iter().map(spec_from_pb).collect(),
        },
        executor: hints_from_pb(m.executor),
        world: m.world,
        references: m.references,
        created_at: m.created_at,
        created_by: m.created_by,
        tags: m.tags,
    })
}

/// A tenant as the wire carries it (its key's public id, never its hash).
pub(crate) fn tenant_to_pb(t: &Tenant) -> pb::TenantInfo {
    pb::TenantInfo {
        name: t.name.clone(),
        admin: t.admin,
        key_id: t.key_id().to_string(),
        created_at: t.created_at.clone(),
        max_upload_bytes: t.limits.max_upload_bytes,
        max_stored_bytes: t.limits.max_stored_bytes,
    }
}

/// A tenant from the wire: `key_hash` holds only the key's public id.
pub(crate) fn tenant_from_pb(t: pb::TenantInfo) -> Tenant {
    Tenant {
        name: t.name,
        admin: t.admin,
        key_hash: t.key_id,
        limits: TenantLimits {
            max_upload_bytes: t.max_upload_bytes,
            max_stored_bytes: t.max_stored_bytes,
        },
        created_at: t.created_at,
    }
}
