//! A live, in-memory view of the `runners` and `placements` buckets, kept by
//! two watches: what the gateway routes by and the scheduler decides on.
//!
//! - A runner is live while its last record arrived within the runner TTL.
//!   While the NATS link is down nothing is expired: the data path goes on
//!   with the last placements and the last runners known (a runner that did
//!   die meanwhile is found out by the gateway's retries).
//! - A broken watch is re-opened with backoff (0.1 s doubling to 2 s); the
//!   view keeps its last state meanwhile.

use crate::kv::{Cluster, decode};
use crate::records::{Placement, RunnerRecord};
use async_nats::jetstream::kv;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Default)]
struct State {
    runners: HashMap<String, (RunnerRecord, Instant)>,
    placements: HashMap<String, Placement>,
    /// Both watches have delivered the buckets' state at least once.
    runners_synced: bool,
    placements_synced: bool,
}

/// The view; clones share it. Dropping the last clone stops the watches.
#[derive(Clone)]
pub struct ClusterView {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Cluster,
    state: RwLock<State>,
    changes: watch::Sender<u64>,
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in self.tasks.get_mut().expect("tasks lock").iter() {
            t.abort();
        }
    }
}

impl std::fmt::Debug for ClusterView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.inner.state.read().expect("view lock");
        f.debug_struct("ClusterView")
            .field("runners", &s.runners.len())
            .field("placements", &s.placements.len())
            .finish()
    }
}

impl ClusterView {
    /// Starts watching both buckets.
    pub fn start(cluster: Cluster) -> Self {
        Self::watching(cluster, &[Bucket::Runners, Bucket::Placements])
    }

    /// Starts watching the placements alone: a runner's view, which need
    /// not receive every other runner's heartbeats (with N runners, that
    /// would be N² messages across the cluster). Its runner queries answer
    /// nothing.
    pub fn start_placements_only(cluster: Cluster) -> Self {
        Self::watching(cluster, &[Bucket::Placements])
    }

    fn watching(cluster: Cluster, buckets: &[Bucket]) -> Self {
        let (changes, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            cluster,
            state: RwLock::new(State {
                // A bucket not followed counts as read.
                runners_synced: !buckets.iter().any(|b| matches!(b, Bucket::Runners)),
                ..State::default()
            }),
            changes,
            tasks: std::sync::Mutex::default(),
        });
        // The tasks hold the view weakly: dropping the last clone ends them.
        let tasks = buckets
            .iter()
            .map(|&b| tokio::spawn(follow(Arc::downgrade(&inner), b)).abort_handle());
        inner.tasks.lock().expect("tasks lock").extend(tasks);
        Self { inner }
    }

    /// The cluster it watches.
    pub fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    /// Whether the buckets it follows have been read at least once.
    pub fn synced(&self) -> bool {
        let s = self.inner.state.read().expect("view lock");
        s.runners_synced && s.placements_synced
    }

    /// A receiver that changes on every update (to wait for a placement).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// The live runners (see the module docs), by id.
    pub fn live_runners(&self) -> Vec<RunnerRecord> {
        let ttl = self.inner.cluster.config().runner_ttl;
        let linked = self.inner.cluster.linked();
        let s = self.inner.state.read().expect("view lock");
        let mut out: Vec<RunnerRecord> = s
            .runners
            .values()
            .filter(|(_, seen)| !linked || seen.elapsed() <= ttl)
            .map(|(r, _)| r.clone())
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The live runners among `ids` (a placement's holders), in `ids`'
    /// order: only those are copied, whatever the cluster's size.
    pub fn live_among(&self, ids: &[String]) -> Vec<RunnerRecord> {
        let ttl = self.inner.cluster.config().runner_ttl;
        let linked = self.inner.cluster.linked();
        let s = self.inner.state.read().expect("view lock");
        ids.iter()
            .filter_map(|id| s.runners.get(id))
            .filter(|(_, seen)| !linked || seen.elapsed() <= ttl)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Whether any runner is live.
    pub fn any_live(&self) -> bool {
        let ttl = self.inner.cluster.config().runner_ttl;
        let linked = self.inner.cluster.linked();
        let s = self.inner.state.read().expect("view lock");
        s.runners
            .values()
            .any(|(_, seen)| !linked || seen.elapsed() <= ttl)
    }

    /// One live runner.
    pub fn runner(&self, id: &str) -> Option<RunnerRecord> {
        let ttl = self.inner.cluster.config().runner_ttl;
        let linked = self.inner.cluster.linked();
        let s = self.inner.state.read().expect("view lock");
        s.runners
            .get(id)
            .filter(|(_, seen)| !linked || seen.elapsed() <= ttl)
            .map(|(r, _)| r.clone())
    }

    /// A module's placement, by digest (`blake3:<hex>`).
    pub fn placement(&self, digest: &str) -> Option<Placement> {
        let s = self.inner.state.read().expect("view lock");
        s.placements.get(digest).cloned()
    }

    /// Every placement.
    pub fn placements(&self) -> Vec<Placement> {
        let s = self.inner.state.read().expect("view lock");
        let mut out: Vec<Placement> = s.placements.values().cloned().collect();
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        out
    }

    /// Notes a record this process wrote itself, so that its own next
    /// decision sees it before the watch brings it back.
    pub fn note_placement(&self, placement: &Placement) {
        let mut s = self.inner.state.write().expect("view lock");
        s.placements
            .insert(placement.digest.clone(), placement.clone());
        drop(s);
        self.inner.changes.send_modify(|n| *n += 1);
    }
}

#[derive(Clone, Copy)]
enum Bucket {
    Runners,
    Placements,
}

/// Follows one bucket for as long as the view lives.
async fn follow(inner: std::sync::Weak<Inner>, bucket: Bucket) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(view) = inner.upgrade() else { return };
        let store = match bucket {
            Bucket::Runners => view.cluster.runners().clone(),
            Bucket::Placements => view.cluster.placements().clone(),
        };
        drop(view);
        match store.watch_with_history(">").await {
            Ok(mut watch) => {
                // An empty bucket delivers nothing: count it read once the
                // watch is open and its initial state (if any) is drained.
                let mut synced = store_is_empty(&store).await;
                if synced {
                    mark_synced(&inner, bucket);
                }
                while let Some(next) = watch.next().await {
                    let Some(view) = inner.upgrade() else { return };
                    match next {
                        Ok(entry) => {
                            backoff = Duration::from_millis(100);
                            apply(&view, bucket, &entry);
                            if !synced && entry.delta == 0 {
                                synced = true;
                                mark_synced(&inner, bucket);
                            }
                            view.changes.send_modify(|n| *n += 1);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "cluster watch interrupted");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot open a cluster watch"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn store_is_empty(store: &kv::Store) -> bool {
    match store.status().await {
        Ok(status) => status.values() == 0,
        Err(_) => false,
    }
}

fn mark_synced(inner: &std::sync::Weak<Inner>, bucket: Bucket) {
    if let Some(view) = inner.upgrade() {
        let mut s = view.state.write().expect("view lock");
        match bucket {
            Bucket::Runners => s.runners_synced = true,
            Bucket::Placements => s.placements_synced = true,
        }
        drop(s);
        view.changes.send_modify(|n| *n += 1);
    }
}

fn apply(view: &Inner, bucket: Bucket, entry: &kv::Entry) {
    let mut s = view.state.write().expect("view lock");
    let gone = entry.operation != kv::Operation::Put;
    match bucket {
        Bucket::Runners => {
            if gone {
                s.runners.remove(&entry.key);
            } else {
                match decode::<RunnerRecord>(&entry.key, &entry.value) {
                    Ok(r) => {
                        s.runners.insert(entry.key.clone(), (r, Instant::now()));
                    }
                    Err(e) => tracing::warn!(error = %e, "ignoring a runner record"),
                }
            }
        }
        Bucket::Placements => {
            let digest = format!("blake3:{}", entry.key);
            if gone {
                s.placements.remove(&digest);
            } else {
                match decode::<Placement>(&entry.key, &entry.value) {
                    Ok(p) => {
                        s.placements.insert(digest, p);
                    }
                    Err(e) => tracing::warn!(error = %e, "ignoring a placement"),
                }
            }
        }
    }
}
