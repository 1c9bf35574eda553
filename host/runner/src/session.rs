//! Sessions on a runner: a client's modules, pinned by digest when it
//! opens, and the outputs of its calls kept here as values until it fetches
//! or releases them.
//!
//! What bounds it, per tenant on this runner: the number of open sessions
//! (`max_sessions`), the bytes their values hold (`session_values_mib`, every
//! value counted in full, checked before a call's outputs are kept), and the
//! lease (`session_lease_ms`): a session no call has touched for its lease is
//! dropped with its values. Per session: [`MAX_MODULES`] modules and
//! [`MAX_VALUES`] values. A session belongs to the tenant that opened it;
//! another tenant's session or value reads as one that does not exist.

use crate::ServeError;
use conduit_registry::Manifest;
use conduit_types::{NamedTensors, Tensor, clip};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Modules one session may pin.
pub const MAX_MODULES: usize = 64;
/// Values one session may hold at once.
pub const MAX_VALUES: usize = 65_536;
/// Expired session ids remembered, to tell "expired" from "never existed".
const REMEMBERED: usize = 4096;

/// Why a session call failed, beyond the data plane's own errors: what the
/// client must tell apart (sent as `conduit-error` in the status's metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionFault {
    /// No such session for this tenant (closed, or never opened).
    SessionNotFound,
    /// The session's lease ran out: it and its values were dropped.
    SessionExpired,
    /// No such value in this session.
    ValueNotFound,
}

impl SessionFault {
    /// The `conduit-error` metadata value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionNotFound => "session-not-found",
            Self::SessionExpired => "session-expired",
            Self::ValueNotFound => "value-not-found",
        }
    }
}

/// A session call's error: the data plane's, and for some the fault the
/// client acts on.
#[derive(Debug)]
pub struct SessionError {
    /// The status it maps to.
    pub error: ServeError,
    /// What a client acts on, if anything.
    pub fault: Option<SessionFault>,
}

impl From<ServeError> for SessionError {
    fn from(error: ServeError) -> Self {
        Self { error, fault: None }
    }
}

impl SessionError {
    fn fault(fault: SessionFault, message: String) -> Self {
        Self {
            error: ServeError::NotFound(message),
            fault: Some(fault),
        }
    }

    /// As a gRPC status, with `conduit-error` set for a fault.
    pub fn to_status(&self) -> tonic::Status {
        let mut status = self.error.to_status();
        if let Some(f) = self.fault {
            status.metadata_mut().insert(
                "conduit-error",
                tonic::metadata::MetadataValue::from_static(f.as_str()),
            );
        }
        status
    }
}

impl From<SessionError> for tonic::Status {
    fn from(e: SessionError) -> Self {
        e.to_status()
    }
}

/// A tenant's budgets for its sessions on this runner.
#[derive(Debug, Clone, Copy)]
pub struct SessionBudget {
    /// Open sessions.
    pub max_sessions: u32,
    /// Bytes of values.
    pub max_bytes: u64,
    /// The longest lease.
    pub max_lease: Duration,
}

/// A value a session holds.
#[derive(Debug, Clone)]
pub struct StoredValue {
    /// The output it was.
    pub name: String,
    /// Its tensor.
    pub tensor: Tensor,
}

struct Session {
    tenant: String,
    lease: Duration,
    expires: Instant,
    /// By the reference given at open and by `blake3:<hex>`.
    modules: HashMap<String, Arc<Manifest>>,
    pinned: usize,
    values: HashMap<u64, StoredValue>,
    bytes: u64,
}

#[derive(Default)]
struct TenantUse {
    sessions: u32,
    bytes: u64,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, Session>,
    tenants: HashMap<String, TenantUse>,
    expired: VecDeque<String>,
    expired_set: HashSet<String>,
    next_value: u64,
}

/// Every session on this runner. Cheap to clone.
#[derive(Clone, Default)]
pub struct Sessions {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock().expect("sessions lock");
        f.debug_struct("Sessions")
            .field("open", &s.sessions.len())
            .finish()
    }
}

/// What a session holds, for a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The lease.
    pub lease: Duration,
    /// Values.
    pub values: u64,
    /// Their bytes.
    pub bytes: u64,
}

fn size_of(t: &Tensor) -> u64 {
    t.byte_size() as u64
}

impl State {
    /// The live session `id` of `tenant`, its lease renewed.
    fn touch(
        &mut self,
        tenant: &str,
        id: &str,
        now: Instant,
    ) -> Result<&mut Session, SessionError> {
        self.expire(now);
        match self.sessions.get_mut(id) {
            Some(s) if s.tenant == tenant => {
                s.expires = crate::instant_after(now, s.lease);
                Ok(s)
            }
            _ if self.expired_set.contains(id) => Err(SessionError::fault(
                SessionFault::SessionExpired,
                format!(
                    "session {} expired: no call renewed its lease; its values were dropped",
                    clip(id)
                ),
            )),
            _ => Err(SessionError::fault(
                SessionFault::SessionNotFound,
                format!(
                    "session {} not found (closed, or opened on another runner)",
                    clip(id)
                ),
            )),
        }
    }

    fn drop_session(&mut self, id: &str) -> Option<Session> {
        let s = self.sessions.remove(id)?;
        if let Some(t) = self.tenants.get_mut(&s.tenant) {
            t.sessions = t.sessions.saturating_sub(1);
            t.bytes = t.bytes.saturating_sub(s.bytes);
            if t.sessions == 0 {
                self.tenants.remove(&s.tenant);
            }
        }
        Some(s)
    }

    fn expire(&mut self, now: Instant) -> usize {
        let gone: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.drop_session(id);
            tracing::info!(session = %id, "session expired");
            if self.expired.len() == REMEMBERED
                && let Some(old) = self.expired.pop_front()
            {
                self.expired_set.remove(&old);
            }
            self.expired.push_back(id.clone());
            self.expired_set.insert(id.clone());
        }
        gone.len()
    }
}

impl Sessions {
    /// Opens a session for `tenant` over `modules` (reference → manifest),
    /// with `lease` (capped by the budget; zero: the budget's).
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED past the tenant's session count; INVALID_ARGUMENT
    /// for too many modules.
    pub fn open(
        &self,
        tenant: &str,
        modules: Vec<(String, Manifest)>,
        lease: Duration,
        budget: SessionBudget,
    ) -> Result<(String, Duration), SessionError> {
        check_modules(modules.len())?;
        let now = Instant::now();
        let mut state = self.state.lock().expect("sessions lock");
        state.expire(now);
        let used = state.tenants.get(tenant).map_or(0, |t| t.sessions);
        if used >= budget.max_sessions {
            return Err(ServeError::Overloaded(format!(
                "tenant `{tenant}` holds {used} sessions on this runner, its limit \
                 (max_sessions); close one first"
            ))
            .into());
        }
        let lease = if lease.is_zero() {
            budget.max_lease
        } else {
            lease.min(budget.max_lease)
        };
        let id = session_id();
        let mut session = Session {
            tenant: tenant.to_string(),
            lease,
            expires: crate::instant_after(now, lease),
            modules: HashMap::new(),
            pinned: 0,
            values: HashMap::new(),
            bytes: 0,
        };
        pin(&mut session, modules)?;
        state
            .tenants
            .entry(tenant.to_string())
            .or_default()
            .sessions += 1;
        state.sessions.insert(id.clone(), session);
        Ok((id, lease))
    }

    /// Pins more modules into an open session.
    ///
    /// # Errors
    /// As [`Sessions::open`], and a [`SessionFault`] for an unknown session.
    pub fn extend(
        &self,
        tenant: &str,
        id: &str,
        modules: Vec<(String, Manifest)>,
    ) -> Result<Duration, SessionError> {
        let mut state = self.state.lock().expect("sessions lock");
        let session = state.touch(tenant, id, Instant::now())?;
        pin(session, modules)?;
        Ok(session.lease)
    }

    /// The module `reference` (as opened, or its `blake3:` digest) names in
    /// a session, and the input tensors: `tensors` as given, `values` read
    /// from the session (after dropping `release`).
    ///
    /// # Errors
    /// A [`SessionFault`] for an unknown session or value; NOT_FOUND for a
    /// module the session does not hold.
    pub fn prepare(
        &self,
        tenant: &str,
        id: &str,
        reference: &str,
        release: &[u64],
        values: &[(String, u64)],
    ) -> Result<(Arc<Manifest>, NamedTensors), SessionError> {
        let mut state = self.state.lock().expect("sessions lock");
        let now = Instant::now();
        state.touch(tenant, id, now)?;
        let freed = {
            let session = state.sessions.get_mut(id).expect("touched");
            release_values(session, release)
        };
        if let Some(t) = state.tenants.get_mut(tenant) {
            t.bytes = t.bytes.saturating_sub(freed.1);
        }
        let session = state.sessions.get_mut(id).expect("touched");
        let manifest = session.modules.get(reference).cloned().ok_or_else(|| {
            ServeError::NotFound(format!(
                "module `{}` is not part of this session: open the session with it, or pin it \
                 (Open with the session's id)",
                clip(reference)
            ))
        })?;
        let mut inputs = Vec::with_capacity(values.len());
        for (name, value) in values {
            let stored = session.values.get(value).ok_or_else(|| {
                SessionError::fault(
                    SessionFault::ValueNotFound,
                    format!(
                        "input `{}`: value {value} not found in this session (released, or \
                         another session's)",
                        clip(name)
                    ),
                )
            })?;
            inputs.push((name.clone(), stored.tensor.clone()));
        }
        Ok((manifest, inputs))
    }

    /// Keeps `outputs` as new values of session `id`; their ids, in order.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED when they would take the tenant's values over its
    /// byte budget or the session over [`MAX_VALUES`] (nothing is kept);
    /// a [`SessionFault`] when the session ended while the call ran.
    pub fn keep(
        &self,
        tenant: &str,
        id: &str,
        outputs: Vec<StoredValue>,
        budget: &SessionBudget,
    ) -> Result<Vec<u64>, SessionError> {
        let mut state = self.state.lock().expect("sessions lock");
        state.touch(tenant, id, Instant::now())?;
        let adding: u64 = outputs.iter().map(|v| size_of(&v.tensor)).sum();
        let used = state.tenants.get(tenant).map_or(0, |t| t.bytes);
        if used.saturating_add(adding) > budget.max_bytes {
            return Err(ServeError::Overloaded(format!(
                "keeping these outputs ({adding} bytes) would take tenant `{tenant}`'s session \
                 values on this runner to {} bytes, over its limit of {} (session_values_mib): \
                 fetch and release values, or close sessions",
                used.saturating_add(adding),
                budget.max_bytes
            ))
            .into());
        }
        let base = state.next_value;
        state.next_value += outputs.len() as u64;
        let session = state.sessions.get_mut(id).expect("touched");
        if session.values.len() + outputs.len() > MAX_VALUES {
            return Err(ServeError::Overloaded(format!(
                "session {id} holds {} values, the most one session may hold is {MAX_VALUES}: \
                 release values",
                session.values.len()
            ))
            .into());
        }
        let mut ids = Vec::with_capacity(outputs.len());
        for (i, v) in outputs.into_iter().enumerate() {
            // Ids are unique on this runner: another session's id never
            // names a value here.
            let vid = base + i as u64 + 1;
            session.values.insert(vid, v);
            ids.push(vid);
        }
        session.bytes += adding;
        if let Some(t) = state.tenants.get_mut(tenant) {
            t.bytes += adding;
        }
        Ok(ids)
    }

    /// The values `ids` of session `id`, in order.
    ///
    /// # Errors
    /// A [`SessionFault`] for an unknown session or value.
    pub fn fetch(&self, tenant: &str, id: &str, ids: &[u64]) -> Result<Vec<Tensor>, SessionError> {
        let mut state = self.state.lock().expect("sessions lock");
        let session = state.touch(tenant, id, Instant::now())?;
        ids.iter()
            .map(|v| {
                session.values.get(v).map(|s| s.tensor.clone()).ok_or_else(|| {
                    SessionError::fault(
                        SessionFault::ValueNotFound,
                        format!(
                            "value {v} not found in this session (released, or another session's)"
                        ),
                    )
                })
            })
            .collect()
    }

    /// Drops values of session `id`; how many it held.
    ///
    /// # Errors
    /// A [`SessionFault`] for an unknown session.
    pub fn release(&self, tenant: &str, id: &str, ids: &[u64]) -> Result<u64, SessionError> {
        let mut state = self.state.lock().expect("sessions lock");
        let session = state.touch(tenant, id, Instant::now())?;
        let (n, bytes) = release_values(session, ids);
        if let Some(t) = state.tenants.get_mut(tenant) {
            t.bytes = t.bytes.saturating_sub(bytes);
        }
        Ok(n)
    }

    /// Renews session `id`'s lease; what it holds.
    ///
    /// # Errors
    /// A [`SessionFault`] for an unknown session.
    pub fn heartbeat(&self, tenant: &str, id: &str) -> Result<Held, SessionError> {
        let mut state = self.state.lock().expect("sessions lock");
        let s = state.touch(tenant, id, Instant::now())?;
        Ok(Held {
            lease: s.lease,
            values: s.values.len() as u64,
            bytes: s.bytes,
        })
    }

    /// Closes session `id`; how many values it held.
    ///
    /// # Errors
    /// A [`SessionFault`] for an unknown session.
    pub fn close(&self, tenant: &str, id: &str) -> Result<u64, SessionError> {
        let mut state = self.state.lock().expect("sessions lock");
        state.touch(tenant, id, Instant::now())?;
        let s = state.drop_session(id).expect("touched");
        Ok(s.values.len() as u64)
    }

    /// Drops every session whose lease ran out; how many.
    pub fn sweep(&self) -> usize {
        self.state
            .lock()
            .expect("sessions lock")
            .expire(Instant::now())
    }

    /// Open sessions and the bytes their values hold, on this runner.
    pub fn totals(&self) -> (u64, u64) {
        let s = self.state.lock().expect("sessions lock");
        (
            s.sessions.len() as u64,
            s.tenants.values().map(|t| t.bytes).sum(),
        )
    }

    /// Per tenant with a session open here: its sessions and the bytes
    /// their values hold, sorted by tenant.
    pub fn by_tenant(&self) -> Vec<(String, u64, u64)> {
        let s = self.state.lock().expect("sessions lock");
        let mut out: Vec<_> = s
            .tenants
            .iter()
            .map(|(tenant, u)| (tenant.clone(), u64::from(u.sessions), u.bytes))
            .collect();
        out.sort();
        out
    }
}

fn check_modules(n: usize) -> Result<(), SessionError> {
    if n > MAX_MODULES {
        return Err(ServeError::InvalidInput(format!(
            "a session holds at most {MAX_MODULES} modules, {n} asked"
        ))
        .into());
    }
    Ok(())
}

fn pin(session: &mut Session, modules: Vec<(String, Manifest)>) -> Result<(), SessionError> {
    let new = modules
        .iter()
        .filter(|(r, _)| !session.modules.contains_key(r))
        .count();
    check_modules(session.pinned + new)?;
    for (reference, manifest) in modules {
        let manifest = Arc::new(manifest);
        session
            .modules
            .insert(manifest.digest.to_string(), manifest.clone());
        if session.modules.insert(reference, manifest).is_none() {
            session.pinned += 1;
        }
    }
    Ok(())
}

fn release_values(session: &mut Session, ids: &[u64]) -> (u64, u64) {
    let (mut n, mut bytes) = (0, 0);
    for id in ids {
        if let Some(v) = session.values.remove(id) {
            n += 1;
            bytes += size_of(&v.tensor);
        }
    }
    session.bytes = session.bytes.saturating_sub(bytes);
    (n, bytes)
}

/// 128 random bits, hex: not guessable, though a guess would only reach the
/// caller's own sessions.
fn session_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: unique still (time and a counter), just guessable.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let h = blake3::hash(format!("{t}/{n}").as_bytes());
        bytes.copy_from_slice(&h.as_bytes()[..16]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_types::DataType;

    fn manifest(name: &str) -> Manifest {
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "tenant": "t", "name": name, "version": "1.0.0", "kind": "component",
            "digest": conduit_types::Digest::of(name.as_bytes()).to_string(), "size": 1,
            "signature": {"inputs": [], "outputs": []},
            "created_at": "", "created_by": ""
        }))
        .expect("manifest");
        m.tags.clear();
        m
    }

    fn budget(bytes: u64) -> SessionBudget {
        SessionBudget {
            max_sessions: 2,
            max_bytes: bytes,
            max_lease: Duration::from_secs(60),
        }
    }

    fn value(n: usize) -> StoredValue {
        StoredValue {
            name: "y".into(),
            tensor: Tensor::new(DataType::Uint8, vec![n as i64], vec![0u8; n].into()).unwrap(),
        }
    }

    #[test]
    fn values_are_counted_released_and_scoped() {
        let s = Sessions::default();
        let b = budget(100);
        let (a, _) = s
            .open("t", vec![("m".into(), manifest("m"))], Duration::ZERO, b)
            .unwrap();
        let (c, _) = s.open("t", vec![], Duration::ZERO, b).unwrap();
        assert!(
            s.open("t", vec![], Duration::ZERO, b).is_err(),
            "max_sessions"
        );
        let ids = s.keep("t", &a, vec![value(60)], &b).unwrap();
        // The tenant's budget spans its sessions.
        let over = s.keep("t", &c, vec![value(50)], &b).unwrap_err();
        assert!(matches!(over.error, ServeError::Overloaded(_)));
        // Another session, or another tenant, does not see the value.
        let e = s.fetch("t", &c, &ids).unwrap_err();
        assert_eq!(e.fault, Some(SessionFault::ValueNotFound));
        let e = s.fetch("u", &a, &ids).unwrap_err();
        assert_eq!(e.fault, Some(SessionFault::SessionNotFound));
        // By reference or by digest.
        let digest = manifest("m").digest.to_string();
        assert!(s.prepare("t", &a, &digest, &[], &[]).is_ok());
        assert!(s.prepare("t", &a, "other", &[], &[]).is_err());
        assert_eq!(s.release("t", &a, &ids).unwrap(), 1);
        assert_eq!(s.release("t", &a, &ids).unwrap(), 0, "twice is harmless");
        s.keep("t", &c, vec![value(50)], &b).unwrap();
        assert_eq!(s.close("t", &c).unwrap(), 1);
        assert_eq!(s.totals(), (1, 0));
    }

    #[test]
    fn echoed_ids_are_clipped() {
        let s = Sessions::default();
        let long = "x".repeat(17_000);
        let e = s.heartbeat("t", &long).unwrap_err();
        let message = e.to_status().message().to_string();
        assert!(
            message.len() < 400 && message.contains("(cut)"),
            "{message}"
        );
        assert_eq!(
            e.to_status().metadata().get("conduit-error").unwrap(),
            "session-not-found"
        );
    }

    #[test]
    fn a_lease_runs_out_and_says_so() {
        let s = Sessions::default();
        let b = budget(100);
        let (a, lease) = s.open("t", vec![], Duration::from_millis(20), b).unwrap();
        assert_eq!(lease, Duration::from_millis(20));
        s.keep("t", &a, vec![value(10)], &b).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(s.sweep(), 1);
        let e = s.heartbeat("t", &a).unwrap_err();
        assert_eq!(e.fault, Some(SessionFault::SessionExpired));
        assert_eq!(s.totals(), (0, 0), "its values went with it");
        // A lease asked past the budget is capped.
        let (_, lease) = s.open("t", vec![], Duration::from_secs(3600), b).unwrap();
        assert_eq!(lease, Duration::from_secs(60));
    }
}
