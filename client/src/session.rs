//! [`Session`]: a point-to-point path to one runner. Outputs stay there as
//! [`Value`]s until fetched; a chain of calls passes values, not tensors.
//!
//! **Replay.** The session keeps a log of the calls whose outputs are still
//! needed: some output is neither released nor fetched (a fetched value's
//! tensor is kept here, so it is sent as a tensor instead). When the runner
//! is lost (unreachable, or it no longer knows the session: restarted, or
//! the lease ran out) the session opens again at the front door with every
//! module pinned by digest, and recomputes, in call order, the calls that
//! produce what the next operation needs. Modules are pure and pinned, so
//! the results are the same bits. A call whose input was released and is
//! gone from the log cannot be recomputed: [`ErrorKind::ReplayFailed`].

use crate::{Error, ErrorKind, Result};
use conduit_proto::session::v1::{self as pb, session_client::SessionClient};
use conduit_types::{DataType, Tensor};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

/// How a session behaves.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The lease asked for (the runner caps it); `None`: the runner's.
    pub lease: Option<Duration>,
    /// Renew the lease in the background while the session is open.
    pub heartbeat: bool,
    /// Reconnect and replay when the runner is lost; off: the loss is an
    /// error ([`ErrorKind::Unavailable`] or [`ErrorKind::SessionExpired`]).
    pub replay: bool,
    /// Deadline of each call.
    pub timeout: Duration,
    /// How long to keep trying to reopen a lost session.
    pub reconnect_timeout: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            lease: None,
            heartbeat: true,
            replay: true,
            timeout: Duration::from_secs(30),
            reconnect_timeout: Duration::from_secs(30),
        }
    }
}

/// A tensor's name, type and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Name.
    pub name: String,
    /// KServe v2 datatype (`FP32`, `INT64`, `BYTES` …).
    pub datatype: String,
    /// Dimensions; -1 is any size.
    pub shape: Vec<i64>,
}

/// A module of a session, pinned by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// The reference it was asked for by.
    pub reference: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// `blake3:<hex>`: what runs, for the session's life.
    pub digest: String,
    /// `component`, `model` or `pipeline`.
    pub kind: String,
    /// Its inputs.
    pub inputs: Vec<TensorSpec>,
    /// Its outputs.
    pub outputs: Vec<TensorSpec>,
}

/// What crossed the client, for one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Tensor bytes sent (inputs given as tensors, and resent on replay).
    pub bytes_sent: u64,
    /// Tensor bytes received (fetched values).
    pub bytes_received: u64,
    /// Run calls sent (replayed ones too).
    pub calls: u64,
    /// Times the session was reopened after losing its runner.
    pub replays: u64,
}

/// A run's input.
#[derive(Debug, Clone)]
pub enum Input {
    /// A tensor sent with the call.
    Tensor(Tensor),
    /// A value of this session: stays on the runner.
    Value(Value),
    /// A value id on the session's current runner, as is (not replayable:
    /// for values this client did not produce).
    RemoteId(u64),
}

impl From<Tensor> for Input {
    fn from(t: Tensor) -> Self {
        Self::Tensor(t)
    }
}

impl From<Value> for Input {
    fn from(v: Value) -> Self {
        Self::Value(v)
    }
}

impl From<&Value> for Input {
    fn from(v: &Value) -> Self {
        Self::Value(v.clone())
    }
}

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Outputs to return with their data in the same round trip (they are
    /// kept as values too, already fetched).
    pub fetch: Vec<String>,
    /// Request parameters (`step.name` for a pipeline's step).
    pub params: Vec<(String, Param)>,
}

/// A request parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A string.
    Str(String),
    /// A float.
    Double(f64),
}

impl Param {
    fn to_proto(&self) -> pb::Param {
        use pb::param::Value as V;
        pb::Param {
            value: Some(match self {
                Self::Bool(b) => V::BoolParam(*b),
                Self::Int(i) => V::Int64Param(*i),
                Self::Str(s) => V::StringParam(s.clone()),
                Self::Double(d) => V::DoubleParam(*d),
            }),
        }
    }
}

/// The runner side of a session: which runner, which session there.
#[derive(Clone)]
struct Link {
    epoch: u64,
    id: String,
    client: SessionClient<Channel>,
    address: String,
    runner_id: String,
}

#[derive(Clone)]
enum Logged {
    Tensor(Tensor),
    Value(u64),
}

struct Call {
    digest: String,
    inputs: Vec<(String, Logged)>,
    params: Vec<(String, Param)>,
    outputs: Vec<u64>,
}

struct Slot {
    call: u64,
    name: String,
    /// (epoch, id) on the runner.
    remote: Option<(u64, u64)>,
    cached: Option<Tensor>,
    released: bool,
}

#[derive(Default)]
struct Book {
    /// By digest.
    modules: BTreeMap<String, ModuleInfo>,
    /// Digests in the order they were pinned: a reopen asks in this order,
    /// so it is placed by the same first module as the first open.
    order: Vec<String>,
    /// Reference asked → digest.
    references: HashMap<String, String>,
    calls: BTreeMap<u64, Call>,
    slots: HashMap<u64, Slot>,
    next: u64,
    /// Runner ids to release with the next call, of the current epoch.
    releasing: Vec<u64>,
    closed: bool,
}

impl Book {
    /// Drops calls no output of which is still needed (live and not
    /// fetched), and the slots of released values of dropped calls.
    fn prune(&mut self) {
        let needed = |s: &Slot| !s.released && s.cached.is_none();
        let gone: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.outputs
                    .iter()
                    .all(|o| self.slots.get(o).is_none_or(|s| !needed(s)))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            let call = self.calls.remove(&id).expect("listed");
            for o in call.outputs {
                if self.slots.get(&o).is_some_and(|s| s.released) {
                    self.slots.remove(&o);
                }
            }
        }
    }
}

struct Inner {
    front: Channel,
    authorization: MetadataValue<Ascii>,
    options: SessionOptions,
    link: Mutex<Link>,
    /// One reconnection at a time.
    reconnecting: tokio::sync::Mutex<()>,
    book: Mutex<Book>,
    sent: AtomicU64,
    received: AtomicU64,
    calls: AtomicU64,
    replays: AtomicU64,
    heartbeat: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The runtime it was opened on (dropping the last handle closes it there).
    runtime: tokio::runtime::Handle,
}

impl Drop for Inner {
    /// The last handle is gone: close it on the runner now rather than
    /// when its lease runs out.
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.lock().expect("heartbeat lock").take() {
            h.abort();
        }
        let closed = self.book.lock().map(|b| b.closed).unwrap_or(true);
        if !closed {
            let rt = self.runtime.clone();
            let link = self.link.lock().expect("link lock").clone();
            let r = request(
                pb::CloseRequest {
                    session_id: link.id,
                },
                &self.authorization,
                self.options.timeout,
            );
            rt.spawn(async move {
                let _ = link.client.clone().close(r).await;
            });
        }
    }
}

/// A session. Cheap to clone; closed by [`Session::close`] (or, on the
/// runner, when its lease runs out after the last clone is dropped).
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let link = self.inner.link.lock().expect("link lock");
        f.debug_struct("Session")
            .field("id", &link.id)
            .field("runner", &link.address)
            .finish()
    }
}

/// A module of a session.
#[derive(Clone)]
pub struct Module {
    session: Session,
    info: ModuleInfo,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module").field("info", &self.info).finish()
    }
}

/// An output kept on the runner. Cheap to clone; keeps its session open;
/// released on the runner when the last clone is dropped (with the
/// session's next call) or by [`Value::release`].
#[derive(Clone)]
pub struct Value {
    handle: Arc<Handle>,
}

struct Handle {
    /// A value keeps its session open (the runner holds it).
    session: Arc<Inner>,
    /// The session it belongs to (its Arc's address, stable while alive).
    owner: usize,
    slot: u64,
    name: String,
    datatype: String,
    shape: Vec<i64>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let inner = &self.session;
        let epoch = inner.link.lock().expect("link lock").epoch;
        let mut book = inner.book.lock().expect("book lock");
        if let Some(slot) = book.slots.get_mut(&self.slot) {
            slot.released = true;
            slot.cached = None;
            if let Some((e, id)) = slot.remote.take()
                && e == epoch
            {
                book.releasing.push(id);
            }
        }
        book.prune();
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Value")
            .field("name", &self.handle.name)
            .field("datatype", &self.handle.datatype)
            .field("shape", &self.handle.shape)
            .finish()
    }
}

fn request<T>(message: T, auth: &MetadataValue<Ascii>, timeout: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("authorization", auth.clone());
    r.set_timeout(timeout);
    r
}

fn channel(addr: &str) -> Result<Channel> {
    let url = crate::url(addr);
    Ok(Endpoint::from_shared(url.clone())
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("bad address `{addr}`: {e}"),
            )
        })?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect_lazy())
}

fn spec(t: pb::TensorSpec) -> TensorSpec {
    TensorSpec {
        name: t.name,
        datatype: t.datatype,
        shape: t.shape,
    }
}

fn module_info(m: pb::ModuleInfo) -> ModuleInfo {
    ModuleInfo {
        reference: m.reference,
        name: m.name,
        version: m.version,
        digest: m.digest,
        kind: m.kind,
        inputs: m.inputs.into_iter().map(spec).collect(),
        outputs: m.outputs.into_iter().map(spec).collect(),
    }
}

fn to_proto(t: &Tensor) -> pb::Tensor {
    pb::Tensor {
        datatype: t.dtype().as_str().to_string(),
        shape: t.shape().to_vec(),
        data: t.data().clone(),
    }
}

fn from_proto(t: pb::Tensor) -> Result<Tensor> {
    let dtype: DataType = t
        .datatype
        .parse()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("runner sent {e}")))?;
    Tensor::new(dtype, t.shape, t.data).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("runner sent a bad tensor: {e}"),
        )
    })
}

/// Opens a session at `front` (dev or gateway) over `modules`.
async fn open_at(
    front: &Channel,
    auth: &MetadataValue<Ascii>,
    modules: Vec<String>,
    options: &SessionOptions,
    epoch: u64,
) -> std::result::Result<(Link, Vec<ModuleInfo>), tonic::Status> {
    let lease_ms = options.lease.map_or(0, |l| {
        u64::try_from(l.as_millis()).unwrap_or(u64::MAX).max(1)
    });
    let reply = SessionClient::new(front.clone())
        .open(request(
            pb::OpenRequest {
                modules,
                lease_ms,
                session_id: String::new(),
            },
            auth,
            options.timeout,
        ))
        .await?
        .into_inner();
    let client = if reply.runner_address.is_empty() {
        SessionClient::new(front.clone())
    } else {
        let ch = channel(&reply.runner_address)
            .map_err(|e| tonic::Status::internal(e.message().to_string()))?;
        SessionClient::new(ch)
    };
    let infos = reply.modules.into_iter().map(module_info).collect();
    Ok((
        Link {
            epoch,
            id: reply.session_id,
            client: client.max_decoding_message_size(usize::MAX),
            address: reply.runner_address,
            runner_id: reply.runner_id,
        },
        infos,
    ))
}

impl Session {
    /// Opens a session at `addr` (`conduit dev`, or a cluster's gateway,
    /// which places the modules and names a runner) over `modules`
    /// (references; more can be added with [`Session::module`]).
    ///
    /// # Errors
    /// NOT_FOUND for a module that does not exist; UNAVAILABLE when nothing
    /// answers; RESOURCE_EXHAUSTED past the tenant's sessions.
    pub async fn open(
        addr: &str,
        api_key: &str,
        modules: &[String],
        options: SessionOptions,
    ) -> Result<Self> {
        let front = channel(addr)?;
        let authorization: MetadataValue<Ascii> = format!("Bearer {api_key}")
            .parse()
            .map_err(|_| Error::new(ErrorKind::Unauthenticated, "the API key is not ASCII"))?;
        let (link, infos) = open_at(&front, &authorization, modules.to_vec(), &options, 0)
            .await
            .map_err(|s| Error::from_status(&s))?;
        let mut book = Book::default();
        for m in infos {
            book.references
                .insert(m.reference.clone(), m.digest.clone());
            if !book.modules.contains_key(&m.digest) {
                book.order.push(m.digest.clone());
            }
            book.modules.insert(m.digest.clone(), m);
        }
        let heartbeat = options.heartbeat;
        let session = Self {
            inner: Arc::new(Inner {
                front,
                authorization,
                options,
                link: Mutex::new(link),
                reconnecting: tokio::sync::Mutex::new(()),
                book: Mutex::new(book),
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
                calls: AtomicU64::new(0),
                replays: AtomicU64::new(0),
                heartbeat: Mutex::new(None),
                runtime: tokio::runtime::Handle::current(),
            }),
        };
        if heartbeat {
            let weak = Arc::downgrade(&session.inner);
            let task = tokio::spawn(heartbeats(weak));
            *session.inner.heartbeat.lock().expect("heartbeat lock") = Some(task);
        }
        Ok(session)
    }

    fn link(&self) -> Link {
        self.inner.link.lock().expect("link lock").clone()
    }

    fn req<T>(&self, message: T) -> tonic::Request<T> {
        request(
            message,
            &self.inner.authorization,
            self.inner.options.timeout,
        )
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.book.lock().expect("book lock").closed {
            return Err(Error::new(
                ErrorKind::SessionClosed,
                "the session is closed",
            ));
        }
        Ok(())
    }

    /// The session id on its current runner.
    pub fn id(&self) -> String {
        self.link().id
    }

    /// The address of its current runner (empty: the address it was
    /// opened at).
    pub fn runner_address(&self) -> String {
        self.link().address
    }

    /// The id of its current runner (empty for `conduit dev`).
    pub fn runner_id(&self) -> String {
        self.link().runner_id
    }

    /// What crossed the client so far.
    pub fn stats(&self) -> Stats {
        let i = &self.inner;
        Stats {
            bytes_sent: i.sent.load(Ordering::Relaxed),
            bytes_received: i.received.load(Ordering::Relaxed),
            calls: i.calls.load(Ordering::Relaxed),
            replays: i.replays.load(Ordering::Relaxed),
        }
    }

    /// Calls logged for replay (some output still needed).
    pub fn logged_calls(&self) -> usize {
        self.inner.book.lock().expect("book lock").calls.len()
    }

    /// The module `reference` names: one the session was opened with, or
    /// another, resolved and pinned now.
    ///
    /// # Errors
    /// NOT_FOUND for a module that does not exist.
    pub async fn module(&self, reference: &str) -> Result<Module> {
        self.check_open()?;
        let known = {
            let book = self.inner.book.lock().expect("book lock");
            let digest = book.references.get(reference).cloned().or_else(|| {
                book.modules
                    .contains_key(reference)
                    .then(|| reference.to_string())
            });
            digest.and_then(|d| book.modules.get(&d)).cloned()
        };
        if let Some(info) = known {
            return Ok(Module {
                session: self.clone(),
                info,
            });
        }
        let mut attempts = 0;
        let reply = loop {
            let link = self.link();
            let r = link
                .client
                .clone()
                .open(self.req(pb::OpenRequest {
                    modules: vec![reference.to_string()],
                    lease_ms: 0,
                    session_id: link.id.clone(),
                }))
                .await;
            match r {
                Ok(r) => break r.into_inner(),
                Err(s) if Error::lost(&s) && self.inner.options.replay && attempts < 3 => {
                    attempts += 1;
                    self.reconnect(link.epoch).await?;
                }
                Err(s) => return Err(Error::from_status(&s)),
            }
        };
        let info = reply
            .modules
            .into_iter()
            .next()
            .map(module_info)
            .ok_or_else(|| Error::new(ErrorKind::Internal, "the runner pinned no module"))?;
        let mut book = self.inner.book.lock().expect("book lock");
        book.references
            .insert(reference.to_string(), info.digest.clone());
        if !book.modules.contains_key(&info.digest) {
            book.order.push(info.digest.clone());
        }
        book.modules.insert(info.digest.clone(), info.clone());
        Ok(Module {
            session: self.clone(),
            info,
        })
    }

    /// Closes the session: the runner drops it and every value it holds.
    /// Values fetched before stay readable here.
    ///
    /// # Errors
    /// UNAVAILABLE when the runner cannot be reached (its lease ends it).
    pub async fn close(&self) -> Result<()> {
        {
            let mut book = self.inner.book.lock().expect("book lock");
            if book.closed {
                return Ok(());
            }
            book.closed = true;
            book.calls.clear();
        }
        if let Some(h) = self.inner.heartbeat.lock().expect("heartbeat lock").take() {
            h.abort();
        }
        let link = self.link();
        match link
            .client
            .clone()
            .close(self.req(pb::CloseRequest {
                session_id: link.id,
            }))
            .await
        {
            Ok(_) => Ok(()),
            // Gone already: closed is what was asked.
            Err(s) if Error::lost(&s) => Ok(()),
            Err(s) => Err(Error::from_status(&s)),
        }
    }

    /// Reopens the session after its runner was lost, unless another call
    /// did since `seen` (the epoch it failed in).
    async fn reconnect(&self, seen: u64) -> Result<()> {
        let _one = self.inner.reconnecting.lock().await;
        if self.link().epoch != seen {
            return Ok(());
        }
        let pinned: Vec<String> = {
            let book = self.inner.book.lock().expect("book lock");
            if book.closed {
                return Err(Error::new(
                    ErrorKind::SessionClosed,
                    "the session is closed",
                ));
            }
            book.order
                .iter()
                .map(|d| &book.modules[d])
                .map(|m| format!("{}@{}", m.name, m.digest))
                .collect()
        };
        let deadline = tokio::time::Instant::now() + self.inner.options.reconnect_timeout;
        let mut pause = Duration::from_millis(50);
        let (link, _) = loop {
            match open_at(
                &self.inner.front,
                &self.inner.authorization,
                pinned.clone(),
                &self.inner.options,
                seen + 1,
            )
            .await
            {
                Ok(opened) => break opened,
                Err(s)
                    if s.code() == tonic::Code::Unavailable
                        && tokio::time::Instant::now() + pause < deadline =>
                {
                    tracing::debug!(error = %s.message(), "session: reopening");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(s) => return Err(Error::from_status(&s)),
            }
        };
        tracing::info!(session = %link.id, runner = %link.address, "session reopened; replaying on demand");
        self.inner.replays.fetch_add(1, Ordering::Relaxed);
        {
            let mut book = self.inner.book.lock().expect("book lock");
            // Ids of the lost runner mean nothing on the new one.
            book.releasing.clear();
        }
        *self.inner.link.lock().expect("link lock") = link;
        Ok(())
    }

    /// Handles a failed call in epoch `epoch`: reconnects when the runner
    /// is lost and replay is on (then the caller retries), else the error.
    async fn recover(&self, status: tonic::Status, epoch: u64, attempt: &mut u32) -> Result<()> {
        if Error::lost(&status) && self.inner.options.replay && *attempt < 3 {
            *attempt += 1;
            self.reconnect(epoch).await
        } else {
            Err(Error::from_status(&status))
        }
    }

    /// Wire inputs for `inputs` on `link`: values of the current epoch by
    /// id, fetched values as tensors; `Err(slots)` when some values must be
    /// recomputed first.
    fn wire_inputs(
        &self,
        book: &Book,
        link: &Link,
        inputs: &[(String, Logged)],
    ) -> Result<std::result::Result<Vec<pb::RunInput>, BTreeSet<u64>>> {
        let mut out = Vec::with_capacity(inputs.len());
        let mut missing = BTreeSet::new();
        for (name, input) in inputs {
            let source = match input {
                Logged::Tensor(t) => pb::run_input::Source::Tensor(to_proto(t)),
                Logged::Value(slot) => {
                    let s = book.slots.get(slot).ok_or_else(|| {
                        Error::new(
                            ErrorKind::ReplayFailed,
                            format!("input `{name}` was released and cannot be recomputed"),
                        )
                    })?;
                    match (&s.remote, &s.cached) {
                        (Some((e, id)), _) if *e == link.epoch => {
                            pb::run_input::Source::ValueId(*id)
                        }
                        (_, Some(t)) => pb::run_input::Source::Tensor(to_proto(t)),
                        _ => {
                            missing.insert(*slot);
                            continue;
                        }
                    }
                }
            };
            out.push(pb::RunInput {
                name: name.clone(),
                source: Some(source),
            });
        }
        Ok(if missing.is_empty() {
            Ok(out)
        } else {
            Err(missing)
        })
    }

    /// Recomputes `slots` on the current runner: the calls that produce
    /// them, and the calls those need, in call order.
    async fn rebuild(&self, slots: BTreeSet<u64>) -> Result<()> {
        let order: Vec<u64> = {
            let book = self.inner.book.lock().expect("book lock");
            let link = self.link();
            let mut needed = BTreeSet::new();
            let mut stack: Vec<u64> = slots.into_iter().collect();
            while let Some(slot) = stack.pop() {
                let s = book.slots.get(&slot).ok_or_else(|| {
                    Error::new(
                        ErrorKind::ReplayFailed,
                        "a value this step needs was released",
                    )
                })?;
                if !book.calls.contains_key(&s.call) {
                    return Err(Error::new(
                        ErrorKind::ReplayFailed,
                        format!(
                            "value `{}` cannot be recomputed: the call that produced it is gone \
                             from the log (its inputs were released)",
                            s.name
                        ),
                    ));
                }
                if needed.insert(s.call) {
                    for (_, input) in &book.calls[&s.call].inputs {
                        if let Logged::Value(v) = input {
                            let ready = book.slots.get(v).is_some_and(|x| {
                                x.cached.is_some() || x.remote.is_some_and(|(e, _)| e == link.epoch)
                            });
                            if !ready {
                                stack.push(*v);
                            }
                        }
                    }
                }
            }
            needed.into_iter().collect()
        };
        for call in order {
            let (digest, inputs, params, outputs) = {
                let book = self.inner.book.lock().expect("book lock");
                let c = &book.calls[&call];
                (
                    c.digest.clone(),
                    c.inputs.clone(),
                    c.params.clone(),
                    c.outputs.clone(),
                )
            };
            let link = self.link();
            let wire = {
                let book = self.inner.book.lock().expect("book lock");
                match self.wire_inputs(&book, &link, &inputs)? {
                    Ok(w) => w,
                    Err(_) => {
                        return Err(Error::new(
                            ErrorKind::ReplayFailed,
                            "an input of a replayed call is missing",
                        ));
                    }
                }
            };
            let reply = self
                .send_run(&link, &digest, wire, &params, &[], Vec::new())
                .await
                .map_err(|s| Error::from_status(&s))?;
            let mut book = self.inner.book.lock().expect("book lock");
            for (slot, v) in outputs.iter().zip(reply.outputs) {
                let released = book.slots.get(slot).is_none_or(|s| s.released);
                if released {
                    book.releasing.push(v.value_id);
                } else if let Some(s) = book.slots.get_mut(slot) {
                    s.remote = Some((link.epoch, v.value_id));
                }
            }
        }
        Ok(())
    }

    async fn send_run(
        &self,
        link: &Link,
        digest: &str,
        inputs: Vec<pb::RunInput>,
        params: &[(String, Param)],
        fetch: &[String],
        release: Vec<u64>,
    ) -> std::result::Result<pb::RunResponse, tonic::Status> {
        let sent: usize = inputs
            .iter()
            .map(|i| match &i.source {
                Some(pb::run_input::Source::Tensor(t)) => t.data.len(),
                _ => 0,
            })
            .sum();
        self.inner.sent.fetch_add(sent as u64, Ordering::Relaxed);
        self.inner.calls.fetch_add(1, Ordering::Relaxed);
        let reply = link
            .client
            .clone()
            .run(
                self.req(pb::RunRequest {
                    session_id: link.id.clone(),
                    module: digest.to_string(),
                    inputs,
                    fetch: fetch.to_vec(),
                    parameters: params
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_proto()))
                        .collect(),
                    release,
                }),
            )
            .await?
            .into_inner();
        let received: usize = reply
            .outputs
            .iter()
            .filter_map(|o| o.tensor.as_ref().map(|t| t.data.len()))
            .sum();
        self.inner
            .received
            .fetch_add(received as u64, Ordering::Relaxed);
        Ok(reply)
    }

    async fn run(
        &self,
        module: &ModuleInfo,
        inputs: Vec<(String, Input)>,
        options: RunOptions,
    ) -> Result<Vec<(String, Value)>> {
        self.check_open()?;
        let owner = Arc::as_ptr(&self.inner) as usize;
        let mut logged = Vec::with_capacity(inputs.len());
        let mut raw = Vec::new();
        {
            let book = self.inner.book.lock().expect("book lock");
            for (name, input) in inputs {
                match input {
                    Input::Tensor(t) => logged.push((name, Logged::Tensor(t))),
                    Input::Value(v) => {
                        if v.handle.owner != owner {
                            return Err(Error::new(
                                ErrorKind::InvalidArgument,
                                format!("input `{name}`: the value belongs to another session"),
                            ));
                        }
                        if book.slots.get(&v.handle.slot).is_none_or(|s| s.released) {
                            return Err(Error::new(
                                ErrorKind::ValueReleased,
                                format!("input `{name}`: value `{}` was released", v.handle.name),
                            ));
                        }
                        logged.push((name, Logged::Value(v.handle.slot)));
                    }
                    Input::RemoteId(id) => raw.push((name, id)),
                }
            }
        }
        let mut attempt = 0;
        let reply = loop {
            let link = self.link();
            let wire = {
                let book = self.inner.book.lock().expect("book lock");
                self.wire_inputs(&book, &link, &logged)?
            };
            let mut wire = match wire {
                Ok(w) => w,
                Err(missing) => {
                    self.rebuild(missing).await?;
                    continue;
                }
            };
            wire.extend(raw.iter().map(|(name, id)| pb::RunInput {
                name: name.clone(),
                source: Some(pb::run_input::Source::ValueId(*id)),
            }));
            let release = std::mem::take(&mut self.inner.book.lock().expect("book lock").releasing);
            match self
                .send_run(
                    &link,
                    &module.digest,
                    wire,
                    &options.params,
                    &options.fetch,
                    release,
                )
                .await
            {
                Ok(r) => break (link.epoch, r),
                Err(s) => self.recover(s, link.epoch, &mut attempt).await?,
            }
        };
        let (epoch, reply) = reply;
        let mut book = self.inner.book.lock().expect("book lock");
        let call = book.next;
        book.next += 1;
        let mut values = Vec::with_capacity(reply.outputs.len());
        let mut slots = Vec::with_capacity(reply.outputs.len());
        for o in reply.outputs {
            let slot = book.next;
            book.next += 1;
            let cached = o.tensor.map(from_proto).transpose()?;
            book.slots.insert(
                slot,
                Slot {
                    call,
                    name: o.name.clone(),
                    remote: Some((epoch, o.value_id)),
                    cached,
                    released: false,
                },
            );
            slots.push(slot);
            values.push((
                o.name.clone(),
                Value {
                    handle: Arc::new(Handle {
                        session: self.inner.clone(),
                        owner,
                        slot,
                        name: o.name,
                        datatype: o.datatype,
                        shape: o.shape,
                    }),
                },
            ));
        }
        book.calls.insert(
            call,
            Call {
                digest: module.digest.clone(),
                inputs: logged,
                params: options.params,
                outputs: slots,
            },
        );
        book.prune();
        Ok(values)
    }

    async fn fetch(&self, value: &Value) -> Result<Tensor> {
        let slot = value.handle.slot;
        let mut attempt = 0;
        loop {
            let link = self.link();
            let id = {
                let book = self.inner.book.lock().expect("book lock");
                let s = book
                    .slots
                    .get(&slot)
                    .filter(|s| !s.released)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::ValueReleased,
                            format!("value `{}` was released", value.handle.name),
                        )
                    })?;
                if let Some(t) = &s.cached {
                    return Ok(t.clone());
                }
                if book.closed {
                    return Err(Error::new(
                        ErrorKind::SessionClosed,
                        "the session is closed",
                    ));
                }
                s.remote.filter(|(e, _)| *e == link.epoch).map(|(_, id)| id)
            };
            let Some(id) = id else {
                self.rebuild(BTreeSet::from([slot])).await?;
                continue;
            };
            let r = link
                .client
                .clone()
                .fetch(self.req(pb::FetchRequest {
                    session_id: link.id.clone(),
                    value_ids: vec![id],
                }))
                .await;
            match r {
                Ok(r) => {
                    let t = r.into_inner().tensors.into_iter().next().ok_or_else(|| {
                        Error::new(ErrorKind::Internal, "the runner sent no tensor")
                    })?;
                    self.inner
                        .received
                        .fetch_add(t.data.len() as u64, Ordering::Relaxed);
                    let t = from_proto(t)?;
                    let mut book = self.inner.book.lock().expect("book lock");
                    if let Some(s) = book.slots.get_mut(&slot) {
                        s.cached = Some(t.clone());
                    }
                    book.prune();
                    return Ok(t);
                }
                Err(s) => self.recover(s, link.epoch, &mut attempt).await?,
            }
        }
    }

    async fn release(&self, value: &Value) -> Result<()> {
        let link = self.link();
        let id = {
            let mut book = self.inner.book.lock().expect("book lock");
            let Some(s) = book.slots.get_mut(&value.handle.slot) else {
                return Ok(());
            };
            if s.released {
                return Ok(());
            }
            s.released = true;
            s.cached = None;
            let id = s.remote.take().filter(|(e, _)| *e == link.epoch);
            book.prune();
            if book.closed {
                return Ok(());
            }
            id
        };
        let Some((_, id)) = id else { return Ok(()) };
        match link
            .client
            .clone()
            .release(self.req(pb::ReleaseRequest {
                session_id: link.id,
                value_ids: vec![id],
            }))
            .await
        {
            Ok(_) => Ok(()),
            // The runner is gone, and the value with it.
            Err(s) if Error::lost(&s) => Ok(()),
            Err(s) => Err(Error::from_status(&s)),
        }
    }
}

/// Renews the lease every third of it, and hands pending releases over.
async fn heartbeats(session: Weak<Inner>) {
    loop {
        let (lease, link, auth, timeout, releasing) = {
            let Some(inner) = session.upgrade() else {
                return;
            };
            let link = inner.link.lock().expect("link lock").clone();
            let releasing = std::mem::take(&mut inner.book.lock().expect("book lock").releasing);
            (
                inner.options.lease,
                link,
                inner.authorization.clone(),
                inner.options.timeout,
                releasing,
            )
        };
        if !releasing.is_empty() {
            let _ = link
                .client
                .clone()
                .release(request(
                    pb::ReleaseRequest {
                        session_id: link.id.clone(),
                        value_ids: releasing,
                    },
                    &auth,
                    timeout,
                ))
                .await;
        }
        let granted = link
            .client
            .clone()
            .heartbeat(request(
                pb::HeartbeatRequest {
                    session_id: link.id.clone(),
                },
                &auth,
                timeout,
            ))
            .await
            .map(|r| Duration::from_millis(r.into_inner().lease_ms))
            .ok();
        let every = (granted.or(lease).unwrap_or(Duration::from_secs(60)) / 3)
            .max(Duration::from_millis(10));
        tokio::time::sleep(every).await;
    }
}

impl Module {
    /// What it is, pinned.
    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    /// Runs it on `inputs`; its outputs stay on the runner as values.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for inputs that do not fit it; the module's own
    /// failure; [`ErrorKind::ValueReleased`] for a released input.
    pub async fn run(&self, inputs: Vec<(String, Input)>) -> Result<Vec<(String, Value)>> {
        self.session
            .run(&self.info, inputs, RunOptions::default())
            .await
    }

    /// [`Module::run`] with options: outputs fetched in the same round trip,
    /// parameters.
    ///
    /// # Errors
    /// As [`Module::run`].
    pub async fn run_with(
        &self,
        inputs: Vec<(String, Input)>,
        options: RunOptions,
    ) -> Result<Vec<(String, Value)>> {
        self.session.run(&self.info, inputs, options).await
    }
}

impl Value {
    /// The output it was.
    pub fn name(&self) -> &str {
        &self.handle.name
    }

    /// Its datatype.
    pub fn datatype(&self) -> &str {
        &self.handle.datatype
    }

    /// Its shape.
    pub fn shape(&self) -> &[i64] {
        &self.handle.shape
    }

    /// Its id on the session's current runner, if it is there now.
    pub fn remote_id(&self) -> Option<u64> {
        let inner = &self.handle.session;
        let epoch = inner.link.lock().expect("link lock").epoch;
        let book = inner.book.lock().expect("book lock");
        book.slots
            .get(&self.handle.slot)?
            .remote
            .filter(|(e, _)| *e == epoch)
            .map(|(_, id)| id)
    }

    fn session(&self) -> Session {
        Session {
            inner: self.handle.session.clone(),
        }
    }

    /// Its tensor, from the runner the first time (kept here after).
    ///
    /// # Errors
    /// [`ErrorKind::ValueReleased`] once released; UNAVAILABLE when the
    /// runner is lost and replay is off or fails.
    pub async fn fetch(&self) -> Result<Tensor> {
        self.session().fetch(self).await
    }

    /// Drops it on the runner (and here). Releasing twice is harmless.
    ///
    /// # Errors
    /// As the runner reports them.
    pub async fn release(&self) -> Result<()> {
        self.session().release(self).await
    }
}
