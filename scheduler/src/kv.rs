//! The cluster's coordination state: three NATS JetStream key-value buckets.
//!
//! | bucket | key | value | lifetime |
//! |---|---|---|---|
//! | `conduit_runners` | runner id | [`RunnerRecord`] | TTL: expires a few heartbeats after the runner stops |
//! | `conduit_placements` | digest hex | [`Placement`] | until the scheduler rewrites it (compare-and-swap) |
//! | `conduit_leader` | `scheduler` | [`Lease`] | TTL: expires when the leader stops renewing |
//! | `conduit_leader` | `scale` | [`ScaleRecord`] | TTL: rewritten by the leader every tick |
//!
//! Tensors never travel through NATS: only these records, and the gateway's
//! placement requests on [`PLACE_SUBJECT`](crate::PLACE_SUBJECT).

use crate::actuator::ScaleRecord;
use crate::error::ClusterError;
use crate::records::{Lease, Placement, RunnerRecord, digest_key};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// The `runners` bucket.
pub const RUNNERS: &str = "conduit_runners";
/// The `placements` bucket.
pub const PLACEMENTS: &str = "conduit_placements";
/// The `leader` bucket.
pub const LEADER: &str = "conduit_leader";
/// The leader bucket's lease key.
const LEASE_KEY: &str = "scheduler";
/// The leader bucket's key for the fleet the leader wants.
const SCALE_KEY: &str = "scale";

/// How a process joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// NATS URL(s), e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// This process, as NATS shows it (`runner r1`, `scheduler s2`…).
    pub name: String,
    /// How long a runner record lives without a heartbeat. Used when the
    /// bucket is created; an existing bucket keeps its own.
    pub runner_ttl: Duration,
    /// How long the leader's lease lives without a renewal (same rule).
    pub lease_ttl: Duration,
    /// How long connecting (and opening the buckets) may take.
    pub connect_timeout: Duration,
}

impl ClusterConfig {
    /// Defaults: runner TTL 3 s (six 0.5 s heartbeats), lease TTL 3 s,
    /// connecting 5 s.
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            name: name.into(),
            runner_ttl: Duration::from_secs(3),
            lease_ttl: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A connection to NATS and the three buckets. Cheap to clone; the client
/// reconnects by itself (forever) once connected, and every call made while
/// the link is down fails with [`ClusterError::Kv`] rather than waiting.
#[derive(Clone)]
pub struct Cluster {
    client: async_nats::Client,
    runners: kv::Store,
    placements: kv::Store,
    leader: kv::Store,
    config: ClusterConfig,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("url", &self.config.url)
            .field("state", &self.client.connection_state())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects and opens (creating when missing) the three buckets.
    ///
    /// # Errors
    /// [`ClusterError::Connect`] when NATS does not answer within
    /// `connect_timeout`; [`ClusterError::Bucket`] when JetStream is off or
    /// refuses a bucket.
    pub async fn connect(config: ClusterConfig) -> Result<Self, ClusterError> {
        let connect = async_nats::ConnectOptions::new()
            .name(&config.name)
            .connection_timeout(config.connect_timeout)
            .request_timeout(Some(Duration::from_secs(2)))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempt| {
                Duration::from_millis((100u64 << attempt.min(4)).min(1000))
            })
            .connect(config.url.as_str());
        let client = tokio::time::timeout(config.connect_timeout, connect)
            .await
            .map_err(|_| ClusterError::Connect {
                url: config.url.clone(),
                message: format!("no answer within {:?}", config.connect_timeout),
            })?
            .map_err(|e| ClusterError::Connect {
                url: config.url.clone(),
                message: e.to_string(),
            })?;
        let js = jetstream::new(client.clone());
        let runners = bucket(&js, RUNNERS, config.runner_ttl, "runner heartbeats").await?;
        let placements = bucket(&js, PLACEMENTS, Duration::ZERO, "placements").await?;
        let leader = bucket(&js, LEADER, config.lease_ttl, "the scheduler lease").await?;
        Ok(Self {
            client,
            runners,
            placements,
            leader,
            config,
        })
    }

    /// The NATS client (placement requests use it directly).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The configuration it connected with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Whether the NATS link is up now.
    pub fn linked(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The `runners` bucket.
    pub fn runners(&self) -> &kv::Store {
        &self.runners
    }

    /// The `placements` bucket.
    pub fn placements(&self) -> &kv::Store {
        &self.placements
    }

    /// Writes (refreshes) a runner's record.
    ///
    /// # Errors
    /// [`ClusterError::Kv`] when NATS does not take it.
    pub async fn heartbeat(&self, record: &RunnerRecord) -> Result<(), ClusterError> {
        let value = encode(record)?;
        self.runners
            .put(&record.id, value)
            .await
            .map_err(|e| kv_error("put", &record.id, e))?;
        Ok(())
    }

    /// Removes a runner's record at once (a clean exit), rather than
    /// waiting for its TTL.
    ///
    /// # Errors
    /// [`ClusterError::Kv`] when NATS does not take it.
    pub async fn leave(&self, id: &str) -> Result<(), ClusterError> {
        self.runners
            .purge(id)
            .await
            .map_err(|e| kv_error("purge", id, e))
    }

    /// A placement and its revision (for compare-and-swap), read from NATS.
    ///
    /// # Errors
    /// [`ClusterError::Kv`] or [`ClusterError::Decode`].
    pub async fn placement(&self, digest: &str) -> Result<Option<(Placement, u64)>, ClusterError> {
        let key = digest_key(digest);
        match self.placements.entry(&key).await {
            Ok(Some(e)) if e.operation == kv::Operation::Put => {
                Ok(Some((decode(&key, &e.value)?, e.revision)))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(kv_error("get", &key, e)),
        }
    }

    /// Writes a placement if it still has `revision` (`None`: if it does
    /// not exist yet); returns the new revision.
    ///
    /// # Errors
    /// [`ClusterError::Conflict`] when someone wrote it first (the caller
    /// re-reads and decides again); [`ClusterError::Kv`] otherwise.
    pub async fn write_placement(
        &self,
        placement: &Placement,
        revision: Option<u64>,
    ) -> Result<u64, ClusterError> {
        let key = digest_key(&placement.digest);
        let value = encode(placement)?;
        match revision {
            None => self.placements.create(&key, value).await.map_err(|e| {
                if e.kind() == kv::CreateErrorKind::AlreadyExists {
                    ClusterError::Conflict(key.clone())
                } else {
                    kv_error("create", &key, e)
                }
            }),
            Some(rev) => self.placements.update(&key, value, rev).await.map_err(|e| {
                if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                    ClusterError::Conflict(key.clone())
                } else {
                    kv_error("update", &key, e)
                }
            }),
        }
    }

    /// Removes a placement (its module scaled to zero) if it still has
    /// `revision`.
    ///
    /// # Errors
    /// [`ClusterError::Conflict`] when someone changed it first;
    /// [`ClusterError::Kv`] otherwise.
    pub async fn remove_placement(&self, digest: &str, revision: u64) -> Result<(), ClusterError> {
        let key = digest_key(digest);
        self.placements
            .delete_expect_revision(&key, Some(revision))
            .await
            .map_err(|e| {
                if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                    ClusterError::Conflict(key.clone())
                } else {
                    kv_error("delete", &key, e)
                }
            })
    }

    /// Writes the fleet the leader wants (actuators follow it).
    ///
    /// # Errors
    /// [`ClusterError::Kv`] when NATS does not take it.
    pub async fn write_scale(&self, record: &ScaleRecord) -> Result<(), ClusterError> {
        self.leader
            .put(SCALE_KEY, encode(record)?)
            .await
            .map(drop)
            .map_err(|e| kv_error("put", SCALE_KEY, e))
    }

    /// The fleet the leader wants, if a leader has said so lately.
    ///
    /// # Errors
    /// [`ClusterError::Kv`] or [`ClusterError::Decode`].
    pub async fn scale(&self) -> Result<Option<ScaleRecord>, ClusterError> {
        match self.leader.entry(SCALE_KEY).await {
            Ok(Some(e)) if e.operation == kv::Operation::Put => {
                Ok(Some(decode(SCALE_KEY, &e.value)?))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(kv_error("get", SCALE_KEY, e)),
        }
    }

    /// Takes the scheduler lease if nobody holds it; its revision when taken.
    ///
    /// # Errors
    /// [`ClusterError::Kv`] when NATS does not answer.
    pub async fn acquire_lease(&self, holder: &str) -> Result<Option<u64>, ClusterError> {
        let value = encode(&Lease {
            holder: holder.into(),
        })?;
        match self.leader.create(LEASE_KEY, value).await {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(kv_error("create", LEASE_KEY, e)),
        }
    }

    /// Renews a held lease; `None` when someone else holds it now.
    ///
    /// # Errors
    /// [`ClusterError::Kv`] when NATS does not answer (the holder keeps
    /// trying until its lease would have expired, then steps down).
    pub async fn renew_lease(
        &self,
        holder: &str,
        revision: u64,
    ) -> Result<Option<u64>, ClusterError> {
        let value = encode(&Lease {
            holder: holder.into(),
        })?;
        match self.leader.update(LEASE_KEY, value, revision).await {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(kv_error("update", LEASE_KEY, e)),
        }
    }

    /// Gives the lease up (a clean exit), so a standby takes over at once.
    ///
    /// # Errors
    /// [`ClusterError::Kv`] when NATS does not answer.
    pub async fn release_lease(&self, revision: u64) -> Result<(), ClusterError> {
        // Only ours: purge only if it is still the revision we wrote.
        match self.leader.entry(LEASE_KEY).await {
            Ok(Some(e)) if e.revision == revision => self
                .leader
                .purge(LEASE_KEY)
                .await
                .map_err(|e| kv_error("purge", LEASE_KEY, e)),
            Ok(_) => Ok(()),
            Err(e) => Err(kv_error("get", LEASE_KEY, e)),
        }
    }

    /// Who holds the lease now, if anyone.
    ///
    /// # Errors
    /// [`ClusterError::Kv`] or [`ClusterError::Decode`].
    pub async fn leader(&self) -> Result<Option<Lease>, ClusterError> {
        match self.leader.entry(LEASE_KEY).await {
            Ok(Some(e)) if e.operation == kv::Operation::Put => {
                Ok(Some(decode(LEASE_KEY, &e.value)?))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(kv_error("get", LEASE_KEY, e)),
        }
    }
}

async fn bucket(
    js: &jetstream::Context,
    name: &str,
    ttl: Duration,
    what: &str,
) -> Result<kv::Store, ClusterError> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    let created = js
        .create_key_value(kv::Config {
            bucket: name.into(),
            description: format!("conduit: {what}"),
            history: 1,
            max_age: ttl,
            storage: jetstream::stream::StorageType::File,
            ..kv::Config::default()
        })
        .await;
    match created {
        Ok(store) => Ok(store),
        // Another process created it first (with its own TTL): use theirs.
        Err(e) => js
            .get_key_value(name)
            .await
            .map_err(|_| ClusterError::Bucket {
                bucket: name.into(),
                message: format!("{e} (is JetStream on? nats-server -js)"),
            }),
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Bytes, ClusterError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ClusterError::Decode {
            key: String::new(),
            message: e.to_string(),
        })
}

pub(crate) fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, ClusterError> {
    serde_json::from_slice(bytes).map_err(|e| ClusterError::Decode {
        key: key.into(),
        message: e.to_string(),
    })
}

fn kv_error(op: &str, key: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Kv {
        op: op.into(),
        key: key.into(),
        message: e.to_string(),
    }
}
