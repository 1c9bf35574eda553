//! Crash safety: `kill -9` the registry while at least 50 uploads are in
//! flight, restart it on the same data directory, and check that everything
//! it acknowledged is there and verifies, that nothing partial or dangling
//! was left behind, and that it serves normally.

use crate::cli_registry::Server;
use crate::common::*;
use conduit_registry::{
    Digest, ExecutorHints, Kind, ListQuery, Manifest, PushProgress, RegistryClient,
};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Pushes started first, in three groups: `0..6` push straight through
/// (and are acknowledged before the bulk starts), `6..9` upload, then
/// register just before the kill (so they are likely being validated or
/// committed when it lands), `9..12` upload and only try to register after
/// the kill.
const EARLY: usize = 12;
/// Those three groups.
const GROUPS: [std::ops::Range<usize>; 3] = [0..6, 6..9, 9..12];
/// Pushes whose uploads start together once the early ones are acknowledged.
const BULK: usize = 60;
/// Uploads streaming at the kill.
const IN_FLIGHT_AT_KILL: usize = 50;
/// Bytes per second each bulk upload may send: slow enough that all of them
/// are still streaming when the registry is killed.
const BULK_RATE: u64 = 512 << 10;
/// Bytes the registry has written to unfinished uploads at the kill (it
/// flushes them to disk a MiB at a time).
const PARTIAL_AT_KILL: u64 = 24 << 20;

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Component `i`: `base` with a custom section (id 0) of seeded bytes
/// appended, so every one is distinct and valid: 200 KiB – 1 MiB for the
/// early pushes, 1.25 – 2 MiB for the bulk (so each of those has flushed
/// bytes to disk before it completes).
fn component(base: &[u8], i: usize) -> Vec<u8> {
    let mut rng = Rng(i as u64 ^ 0x00c0_ffee);
    let (min, max): (usize, usize) = if i < EARLY {
        (200 << 10, 1 << 20)
    } else {
        (5 << 18, 2 << 20)
    };
    let len = min + (rng.next() % (max - min) as u64) as usize;
    let mut payload = Vec::with_capacity(len + 8);
    while payload.len() < len {
        payload.extend_from_slice(&rng.next().to_le_bytes());
    }
    payload.truncate(len);
    with_custom_section(base, &format!("conduit-crash-test-{i}"), &payload)
}

fn name(i: usize) -> String {
    format!("c{i}")
}

/// What the clients saw before the kill.
#[derive(Default)]
struct Acks {
    /// Uploads the registry acknowledged: index → digest.
    uploads: BTreeMap<usize, Digest>,
    /// Manifests the registry acknowledged: index → manifest.
    manifests: BTreeMap<usize, Manifest>,
}

#[derive(Default)]
struct Load {
    uploading: AtomicUsize,
    acks: Mutex<Acks>,
}

/// A TCP proxy to `target` that forwards each connection's client-to-server
/// bytes at no more than `rate` bytes per second (one thread per direction).
struct Throttle {
    url: String,
    stop: Arc<AtomicBool>,
}

impl Throttle {
    fn new(target: &str, rate: u64) -> Self {
        let target: SocketAddr = target
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("not an address: {target}"));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let (Ok(client), Ok(server)) = (client, TcpStream::connect(target)) else {
                    continue;
                };
                let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pipe(client, server, Some(rate)));
                std::thread::spawn(move || pipe(s, c, None));
            }
        });
        Self { url, stop }
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, rate: Option<u64>) {
    let started = Instant::now();
    let mut total = 0u64;
    let mut buf = [0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        total += n as u64;
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(total as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Phases of the test, for [`push`] to wait on.
const EARLY_PHASE: u8 = 0;
const BULK_PHASE: u8 = 1;
const ABOUT_TO_KILL: u8 = 2;
const KILLED: u8 = 3;

/// Pushes component `i` as `c<i>@1.0.0` in two steps, recording each
/// acknowledgement: starts uploading once `start` lets it, registers once the
/// test reaches phase `register`. Returns quietly when the registry is gone.
async fn push(
    url: String,
    key: String,
    bytes: Vec<u8>,
    i: usize,
    load: Arc<Load>,
    start: Option<Arc<tokio::sync::Barrier>>,
    (mut phase, register): (tokio::sync::watch::Receiver<u8>, u8),
) {
    let client = RegistryClient::connect(&url, &key).await;
    if let Some(start) = start {
        start.wait().await;
    }
    let Ok(client) = client else { return };
    load.uploading.fetch_add(1, Ordering::SeqCst);
    let uploaded = client.upload(&bytes, &PushProgress::default()).await;
    load.uploading.fetch_sub(1, Ordering::SeqCst);
    let Ok((digest, _)) = uploaded else { return };
    assert_eq!(digest, Digest::of(&bytes));
    load.acks.lock().unwrap().uploads.insert(i, digest);
    phase.wait_for(|p| *p >= register).await.unwrap();
    let registered = client
        .put_manifest(
            Kind::Component,
            &name(i),
            "1.0.0",
            &digest,
            &ExecutorHints::default(),
            &[],
            &[],
        )
        .await;
    if let Ok((manifest, created)) = registered {
        assert!(created, "{} registered twice", name(i));
        load.acks.lock().unwrap().manifests.insert(i, manifest);
    }
}

/// Waits (polling) until `done` holds.
#[track_caller]
fn wait_until(server: &Server, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}; registry stderr:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Every blob file's blake3 is its name, and no upload is left in `tmp/`.
fn check_blob_files(blobs: &Path) -> BTreeSet<Digest> {
    let tmp: Vec<_> = std::fs::read_dir(blobs.join("tmp"))
        .expect("blobs/tmp exists")
        .collect();
    assert!(tmp.is_empty(), "partial uploads left in tmp/: {tmp:?}");
    let mut found = BTreeSet::new();
    for shard in std::fs::read_dir(blobs.join("blake3")).unwrap() {
        let shard = shard.unwrap();
        assert!(shard.file_type().unwrap().is_dir(), "{:?}", shard.path());
        let prefix = shard.file_name().into_string().unwrap();
        for entry in std::fs::read_dir(shard.path()).unwrap() {
            let entry = entry.unwrap();
            let file = entry.file_name().into_string().unwrap();
            let digest: Digest = format!("blake3:{file}")
                .parse()
                .unwrap_or_else(|e| panic!("stray file {:?}: {e}", entry.path()));
            assert!(file.starts_with(&prefix), "{:?}", entry.path());
            let bytes = std::fs::read(entry.path()).unwrap();
            assert_eq!(
                Digest::of(&bytes),
                digest,
                "partial or corrupt blob {:?} ({} bytes)",
                entry.path(),
                bytes.len()
            );
            found.insert(digest);
        }
    }
    found
}

/// Every manifest of the tenant, through every page.
async fn list_all(client: &RegistryClient) -> Vec<Manifest> {
    let mut query = ListQuery {
        page_size: 16,
        ..ListQuery::default()
    };
    let mut all = Vec::new();
    loop {
        let (page, next) = client.list(&query).await.expect("list");
        all.extend(page);
        if next.is_empty() {
            return all;
        }
        query.page_token = next;
    }
}

#[test]
fn kill_9_during_concurrent_uploads_loses_nothing_acknowledged() {
    let started_at = Instant::now();
    let dir = TempDir::new("conduit-crash");
    let data = dir.path().join("data");
    let mut server = Server::start("registry", &data, true);
    let key = server.key.clone().expect("admin key on first start");
    let base = Arc::new(component_bytes("softmax-topk"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Early pushes, until some are acknowledged; then the bulk uploads all
    // start at once, and the registry is killed while they stream.
    let load = Arc::new(Load::default());
    let (phase, phase_rx) = tokio::sync::watch::channel(EARLY_PHASE);
    let throttle = Throttle::new(&server.url, BULK_RATE);
    let spawn = |i: usize, start: Option<Arc<tokio::sync::Barrier>>, register: u8| {
        let url = if start.is_some() {
            &throttle.url
        } else {
            &server.url
        };
        rt.spawn(push(
            url.clone(),
            key.clone(),
            component(&base, i),
            i,
            load.clone(),
            start,
            (phase_rx.clone(), register),
        ))
    };
    let [straight, before_kill, after_kill] = GROUPS;
    let mut tasks: Vec<_> = straight
        .clone()
        .map(|i| spawn(i, None, EARLY_PHASE))
        .collect();
    tasks.extend(before_kill.clone().map(|i| spawn(i, None, ABOUT_TO_KILL)));
    tasks.extend(after_kill.clone().map(|i| spawn(i, None, KILLED)));
    wait_until(&server, "the early pushes are acknowledged", || {
        let acks = load.acks.lock().unwrap();
        acks.uploads.len() == EARLY && acks.manifests.len() == straight.len()
    });
    phase.send_replace(BULK_PHASE);
    let barrier = Arc::new(tokio::sync::Barrier::new(BULK));
    tasks.extend((EARLY..EARLY + BULK).map(|i| spawn(i, Some(barrier.clone()), BULK_PHASE)));
    // The registry's own view: an upload in progress is a file in blobs/tmp.
    let tmp = data.join("registry/blobs/tmp");
    let partial = || -> Vec<u64> {
        std::fs::read_dir(&tmp)
            .unwrap()
            .filter_map(|e| Some(e.ok()?.metadata().ok()?.len()))
            .collect()
    };
    wait_until(&server, "the bulk uploads reach the disk", || {
        partial().iter().sum::<u64>() > 0
    });
    phase.send_replace(ABOUT_TO_KILL);
    wait_until(&server, "the bulk uploads are half written", || {
        let partial = partial();
        load.uploading.load(Ordering::SeqCst) >= IN_FLIGHT_AT_KILL
            && partial.len() >= IN_FLIGHT_AT_KILL
            && partial.iter().sum::<u64>() >= PARTIAL_AT_KILL
    });
    let in_flight_at_kill = load.uploading.load(Ordering::SeqCst);
    server.kill_9();
    phase.send_replace(KILLED);
    let killed_at = started_at.elapsed();
    // The kill left the streaming uploads behind, half written.
    let partial = partial();
    rt.block_on(async {
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("pushes end once the registry is gone")
                .expect("push task panicked");
        }
    });
    let started = EARLY + BULK;
    let acks = std::mem::take(&mut *load.acks.lock().unwrap());
    eprintln!(
        "killed at {killed_at:?} with {in_flight_at_kill} uploads streaming \
         ({} partial files holding {} MiB): \
         of {started} pushes, {} uploads and {} manifests acknowledged",
        partial.len(),
        partial.iter().sum::<u64>() >> 20,
        acks.uploads.len(),
        acks.manifests.len()
    );
    assert!(partial.len() >= IN_FLIGHT_AT_KILL, "{partial:?}");
    assert!(started >= 50);
    assert!(in_flight_at_kill >= IN_FLIGHT_AT_KILL);
    assert!(straight.clone().all(|i| acks.manifests.contains_key(&i)));
    assert!(
        after_kill
            .clone()
            .all(|i| acks.uploads.contains_key(&i) && !acks.manifests.contains_key(&i)),
        "uploads acknowledged but never registered"
    );
    let unacked: Vec<usize> = (0..started)
        .filter(|i| !acks.manifests.contains_key(i))
        .collect();
    assert!(
        unacked.len() >= IN_FLIGHT_AT_KILL,
        "the uploads streaming at the kill cannot have been acknowledged"
    );

    // Restart on the same data directory: the key is not printed again.
    let server = Server::start("registry", &data, false);
    assert!(server.key.is_none(), "{:?}", server.stdout);
    let restarted_at = started_at.elapsed();
    rt.block_on(async {
        let client = RegistryClient::connect(&server.url, &key)
            .await
            .expect("the old admin key works after the restart");

        // Every acknowledged manifest is there and its bytes verify.
        for (&i, acked) in &acks.manifests {
            let bytes = component(&base, i);
            let m = client
                .resolve(&format!("{}@1.0.0", name(i)))
                .await
                .unwrap_or_else(|e| panic!("acknowledged {} lost: {e}", name(i)));
            assert_eq!(m.digest, acked.digest);
            assert_eq!(m.digest, Digest::of(&bytes));
            assert_eq!(m.size, bytes.len() as u64);
            let downloaded = client.download(&m.digest).await.unwrap();
            assert!(downloaded == bytes, "{} downloads other bytes", name(i));
        }
        // Every acknowledged upload is there and verifies.
        for (&i, digest) in &acks.uploads {
            let downloaded = client
                .download(digest)
                .await
                .unwrap_or_else(|e| panic!("acknowledged upload {i} ({digest}) lost: {e}"));
            assert_eq!(Digest::of(&downloaded), *digest);
            assert!(downloaded == component(&base, i), "upload {i} differs");
        }

        // No dangling manifest: every one listed has its whole blob.
        let listed = list_all(&client).await;
        assert!(listed.len() >= acks.manifests.len());
        eprintln!(
            "after the restart: {} manifests ({} committed but not acknowledged)",
            listed.len(),
            listed.len() - acks.manifests.len()
        );
        let mut names = BTreeSet::new();
        for m in &listed {
            let i: usize = m
                .name
                .strip_prefix('c')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected module {}", m.name));
            assert!(i < started, "{} was never pushed", m.name);
            assert!(names.insert(i), "{} listed twice", m.name);
            let bytes = client
                .download(&m.digest)
                .await
                .unwrap_or_else(|e| panic!("dangling manifest {}: {e}", m.reference()));
            assert_eq!(Digest::of(&bytes), m.digest, "{}", m.reference());
            assert_eq!(bytes.len() as u64, m.size, "{}", m.reference());
            assert!(bytes == component(&base, i), "{}", m.reference());
        }

        // No partial blob on disk.
        let on_disk = check_blob_files(&data.join("registry/blobs"));
        for m in &listed {
            assert!(on_disk.contains(&m.digest), "{}", m.reference());
        }
        for digest in acks.uploads.values() {
            assert!(on_disk.contains(digest));
        }

        // It serves normally: the pushes the kill interrupted go through
        // when retried, and so does a new one.
        for &i in &unacked {
            let bytes = component(&base, i);
            let (m, _) = client
                .push(
                    Kind::Component,
                    &name(i),
                    "1.0.0",
                    &bytes,
                    &[],
                    &PushProgress::default(),
                )
                .await
                .unwrap_or_else(|e| panic!("retrying {} after the restart: {e}", name(i)));
            assert_eq!(m.digest, Digest::of(&bytes));
        }
        let fresh = component(&base, started);
        let (m, created) = client
            .push(
                Kind::Component,
                "after-restart",
                "1.0.0",
                &fresh,
                &["prod".to_string()],
                &PushProgress::default(),
            )
            .await
            .expect("push after the restart");
        assert!(created);
        assert_eq!(m.digest, Digest::of(&fresh));
        let resolved = client.resolve("after-restart:prod").await.unwrap();
        assert_eq!(resolved.digest, m.digest);
        assert!(client.download(&m.digest).await.unwrap() == fresh);
        assert_eq!(list_all(&client).await.len(), started + 1);
    });
    eprintln!(
        "restarted at {restarted_at:?}, verified and retried by {:?}",
        started_at.elapsed()
    );
    drop(server);
}
