//! One client path for every server: a [`Prepared`] request (encoded once
//! per protocol), [`Client`] connections that send it and check the answer,
//! and a [`Pool`] of them for the open loop. Everything a request can go
//! wrong with is a [`Failure`], reported by kind.

use super::workload::{Case, Wire};
use super::{grpc, http};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// KServe v2 over gRPC (`inference.GRPCInferenceService`) or HTTP/REST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `ModelInfer` with `raw_input_contents`.
    Grpc,
    /// `POST /v2/models/{name}/infer` with Triton's binary tensor extension.
    Http,
}

impl Protocol {
    /// `grpc` or `http`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Http => "http",
        }
    }
}

/// Where and what to send.
#[derive(Clone, Debug)]
pub struct Target {
    /// Protocol to speak.
    pub protocol: Protocol,
    /// `host:port` (a leading `http://` is dropped).
    pub address: String,
    /// Model (or pipeline) name.
    pub model: String,
    /// Version; empty for the server's choice.
    pub version: String,
    /// API key, sent as `authorization: Bearer KEY` (Triton needs none).
    pub key: Option<String>,
    /// How long one request may take before it counts as a timeout.
    pub timeout: Duration,
}

impl Target {
    /// The address without scheme or trailing slash.
    pub fn host_port(&self) -> &str {
        let a = self.address.trim_end_matches('/');
        a.strip_prefix("http://").unwrap_or(a)
    }
}

/// Why a request did not count as a success.
#[derive(Debug, Clone)]
pub enum Failure {
    /// No connection could be opened.
    Connect(String),
    /// The connection broke during the request.
    Transport(String),
    /// The server answered with an error: `kind` is `grpc <Code>` or `http <status>`.
    Status {
        /// `grpc <Code>` or `http <status>`.
        kind: String,
        /// The server's message.
        message: String,
    },
    /// The answer could not be decoded.
    Decode(String),
    /// The answer was decoded, and is wrong.
    Wrong(String),
    /// No answer within the timeout.
    Timeout,
}

impl Failure {
    /// The kind errors are counted by.
    pub fn kind(&self) -> String {
        match self {
            Self::Connect(_) => "connect".into(),
            Self::Transport(_) => "transport".into(),
            Self::Status { kind, .. } => kind.clone(),
            Self::Decode(_) => "undecodable answer".into(),
            Self::Wrong(_) => "wrong answer".into(),
            Self::Timeout => "timeout".into(),
        }
    }

    /// A one-line description.
    pub fn message(&self) -> String {
        match self {
            Self::Connect(m) | Self::Transport(m) | Self::Decode(m) | Self::Wrong(m) => m.clone(),
            Self::Status { message, .. } => message.clone(),
            Self::Timeout => "no answer within the timeout".into(),
        }
    }
}

/// The request of a run, encoded once for its protocol, and its check.
pub struct Prepared {
    /// Where it goes.
    pub target: Target,
    /// What it carries and how its answer is checked.
    pub case: Case,
    encoded: Encoded,
}

enum Encoded {
    Grpc(grpc::Encoded),
    Http(http::Encoded),
}

impl Prepared {
    /// Encodes `case` for `target`.
    ///
    /// # Errors
    /// When the key cannot be sent as a header.
    pub fn new(target: Target, case: Case) -> anyhow::Result<Self> {
        let encoded = match target.protocol {
            Protocol::Grpc => Encoded::Grpc(grpc::Encoded::new(&target, &case)?),
            Protocol::Http => Encoded::Http(http::Encoded::new(&target, &case)?),
        };
        Ok(Self {
            target,
            case,
            encoded,
        })
    }
}

/// One connection (gRPC: a channel; HTTP/1.1: a keep-alive connection,
/// reopened when it breaks).
pub enum Client {
    /// A tonic channel.
    Grpc(grpc::Conn),
    /// A hyper HTTP/1.1 connection.
    Http(http::Conn),
}

impl Client {
    /// Opens a connection.
    ///
    /// # Errors
    /// [`Failure::Connect`] when the server cannot be reached.
    pub async fn connect(p: &Prepared) -> Result<Self, Failure> {
        Ok(match &p.encoded {
            Encoded::Grpc(_) => Self::Grpc(grpc::Conn::connect(&p.target).await?),
            Encoded::Http(_) => Self::Http(http::Conn::connect(&p.target).await?),
        })
    }

    /// Sends the request once and checks the answer.
    ///
    /// # Errors
    /// Whatever went wrong, a wrong answer included.
    pub async fn infer(&mut self, p: &Prepared) -> Result<(), Failure> {
        let outputs: Vec<Wire> = tokio::time::timeout(p.target.timeout, async {
            match (self, &p.encoded) {
                (Self::Grpc(c), Encoded::Grpc(e)) => c.infer(e).await,
                (Self::Http(c), Encoded::Http(e)) => c.infer(&p.target, e).await,
                _ => unreachable!("a client is made for its request's protocol"),
            }
        })
        .await
        .map_err(|_| Failure::Timeout)??;
        p.case.check(&outputs).map_err(Failure::Wrong)
    }
}

/// Connections shared by the open loop's requests: gRPC requests share
/// (multiplex on) the channels in turn; an HTTP/1.1 request takes an idle
/// connection or opens one, and puts it back.
pub struct Pool {
    grpc: Vec<grpc::Conn>,
    next: AtomicUsize,
    idle: Mutex<Vec<Client>>,
}

impl Pool {
    /// Opens `connections` connections.
    ///
    /// # Errors
    /// [`Failure::Connect`] when the server cannot be reached.
    pub async fn new(p: &Prepared, connections: usize) -> Result<Self, Failure> {
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            clients.push(Client::connect(p).await?);
        }
        let grpc = clients
            .iter()
            .filter_map(|c| match c {
                Client::Grpc(c) => Some(c.clone()),
                Client::Http(_) => None,
            })
            .collect::<Vec<_>>();
        let idle = if grpc.is_empty() { clients } else { Vec::new() };
        Ok(Self {
            grpc,
            next: AtomicUsize::new(0),
            idle: Mutex::new(idle),
        })
    }

    /// Sends the request once on a pooled connection and checks the answer.
    ///
    /// # Errors
    /// As [`Client::infer`].
    pub async fn infer(&self, p: &Prepared) -> Result<(), Failure> {
        if !self.grpc.is_empty() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.grpc.len();
            return Client::Grpc(self.grpc[i].clone()).infer(p).await;
        }
        let idle = self.idle.lock().expect("pool lock").pop();
        let mut client = match idle {
            Some(c) => c,
            None => Client::connect(p).await?,
        };
        let result = client.infer(p).await;
        // A broken connection is reopened by its next request.
        self.idle.lock().expect("pool lock").push(client);
        result
    }

    /// Connections opened so far (HTTP grows with the requests in flight).
    pub fn connections(&self) -> usize {
        self.grpc.len() + self.idle.lock().expect("pool lock").len()
    }
}
