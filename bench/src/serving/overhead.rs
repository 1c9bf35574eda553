//! Server-side overhead per request on a tiny model: the executor, the data
//! plane in-process, and the gRPC round trip.

use super::load::{Pair, paired};
use super::server::{Server, check_digest, f32s, infer, output, request};
use crate::harness::{Budget, time_async, us};
use anyhow::{Result, ensure};
use conduit_executor::onnx_signature;
use conduit_executor::{Backends, Executor};
use conduit_proto::inference::ServerLiveRequest;
use conduit_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use conduit_registry::ExecutorHints;
use conduit_runner::InferRequest;
use conduit_types::{NamedTensors, Tensor};
use std::time::Duration;
use tonic::transport::Channel;

/// The server's count of successful `add` requests and their total time.
async fn served_totals(server: &Server) -> Result<(u64, u64)> {
    let stats = server.serving.statistics(&server.tenant, "add", "").await?;
    Ok(stats
        .iter()
        .fold((0, 0), |(n, ns), (_, c)| (n + c.success, ns + c.success_ns)))
}

/// The overhead numbers (µs, p50), also written by `--overhead-json`.
#[derive(Debug, Clone, Copy)]
pub struct Overhead {
    /// `Serving::infer` − executor, in process (the goal: ≤ 30 µs).
    pub data_plane_us: f64,
    /// gRPC `ModelInfer` − `ServerLive` round trip.
    pub beyond_transport_floor_us: f64,
    /// gRPC round trip − executor: all a client pays beyond the model.
    pub round_trip_minus_executor_us: f64,
    /// gRPC `ServerLive` round trip: the transport floor.
    pub server_live_us: f64,
}

/// Measures and prints the overhead tables on `add` ([1, 4] FP32), concurrency 1.
pub(super) async fn overhead(
    server: &Server,
    client: &mut GrpcInferenceServiceClient<Channel>,
    bytes: &[u8],
    hints: &ExecutorHints,
    budget: Budget,
    smoke: bool,
) -> Result<Overhead> {
    let x = Tensor::from_f32(vec![1, 4], &[1.0, 2.0, 3.0, 4.0])?;
    let inputs: NamedTensors = vec![("x".into(), x)];
    let wire = request("add", &inputs);
    let answer = infer(client, &server.authorization, wire.clone()).await?;
    check_digest(&answer)?;
    let (_, served) = output(&answer, "y")?;

    // The same model and executor configuration, called directly.
    let backends = Backends::detect(None);
    let config = backends.config("add", hints)?;
    let backend = backends.get(config.backend)?;
    let executor = Executor::start(backend, bytes, onnx_signature(bytes)?, config)?;
    let direct = executor.infer(inputs.clone()).await?;
    ensure!(
        direct[0].1.data() == served,
        "`add` over gRPC answered {:?}, directly {:?}",
        f32s(served),
        direct[0].1.to_f32()?
    );

    let rounds = if smoke { 1 } else { 3 };
    // Requests and nanoseconds the server counted during the round trips.
    let mut handled = (0u64, 0u64);
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // On the server's runtime, as a gRPC handler runs.
        let (e, i) = (executor.clone(), inputs.clone());
        let (serving, tenant) = (server.serving.clone(), server.tenant.clone());
        local.push(
            server
                .on_server(async move {
                    paired(
                        budget,
                        || {
                            let (e, i) = (e.clone(), i.clone());
                            async move {
                                e.infer(i).await.expect("direct executor");
                            }
                        },
                        || {
                            let (serving, tenant) = (serving.clone(), tenant.clone());
                            let request = InferRequest {
                                model: "add".into(),
                                inputs: i.clone(),
                                ..InferRequest::default()
                            };
                            async move {
                                serving
                                    .infer(&tenant, request)
                                    .await
                                    .expect("Serving::infer");
                            }
                        },
                    )
                    .await
                })
                .await?,
        );
        let before = served_totals(server).await?;
        remote.push(
            paired(
                budget,
                || {
                    // A clone shares the connection (tonic clients are handles).
                    let mut client = client.clone();
                    async move {
                        client
                            .server_live(ServerLiveRequest {})
                            .await
                            .expect("gRPC ServerLive");
                    }
                },
                || {
                    let (mut client, request) = (client.clone(), wire.clone());
                    async move {
                        infer(&mut client, &server.authorization, request)
                            .await
                            .expect("gRPC ModelInfer");
                    }
                },
            )
            .await,
        );
        let after = served_totals(server).await?;
        handled.0 += after.0 - before.0;
        handled.1 += after.1 - before.1;
    }
    let (direct, in_process, data_plane) = Pair::median(&local);
    let (live, round_trip, beyond_floor) = Pair::median(&remote);
    let auth_value = server.authorization.to_str()?.to_string();
    let serving = server.serving.clone();
    let auth = time_async(budget, || {
        let (serving, auth_value) = (&serving, &auth_value);
        async move {
            std::hint::black_box(
                serving
                    .authenticate(Some(auth_value))
                    .await
                    .expect("authenticate"),
            );
        }
    })
    .await;

    println!();
    println!(
        "| `add` [1, 4] FP32, {}, one row, concurrency 1; rows 1·2 and 3·4 timed alternately; median of {rounds} rounds | p50 (µs) | p90 (µs) | pairs |",
        executor.backend()
    );
    println!("|---|---:|---:|---:|");
    for (label, (p50, p90), n) in [
        (
            "`Executor::infer`, in-process (queue + worker + ORT)",
            direct,
            local.iter().map(|p| p.n).sum::<usize>(),
        ),
        ("`Serving::infer`, in-process (no gRPC)", in_process, 0),
        (
            "gRPC `ModelInfer` round trip, loopback",
            round_trip,
            remote.iter().map(|p| p.n).sum(),
        ),
        (
            "gRPC `ServerLive` round trip (empty messages, no key): the transport floor",
            live,
            0,
        ),
    ] {
        let n = if n == 0 { String::new() } else { n.to_string() };
        println!("| {label} | {:.1} | {:.1} | {n} |", us(p50), us(p90));
    }
    let server_side = Duration::from_nanos(handled.1 / handled.0.max(1));
    println!(
        "| server-side time of those round trips: received → answer (Triton statistics, **mean**) | {:.1} | | {} |",
        us(server_side),
        handled.0
    );
    println!(
        "| `Serving::authenticate` (per gRPC request; not in `Serving::infer`) | {:.1} | {:.1} | {} |",
        us(auth.p50),
        us(auth.p90),
        auth.n
    );
    println!();
    println!("| server overhead per request | µs | goal |");
    println!("|---|---:|---:|");
    println!(
        "| **data plane in-process**: `Serving::infer` − executor (median of call-by-call differences) | **{data_plane:.1}** | ≤ 30 {} |",
        if data_plane <= 30.0 { "✓" } else { "✗" }
    );
    println!(
        "| `ModelInfer` − `ServerLive` round trip (median of call-by-call differences): the data plane, auth, tensors in protobuf, waiting on the model | {beyond_floor:.1} | |"
    );
    println!(
        "| gRPC round trip − `Serving::infer` (p50 difference): protobuf, HTTP/2, loopback TCP, auth, tonic client | {:.1} | |",
        us(round_trip.0) - us(in_process.0)
    );
    println!(
        "| gRPC round trip − executor (p50 difference): all a client pays beyond the model | {:.1} | |",
        us(round_trip.0) - us(direct.0)
    );
    Ok(Overhead {
        data_plane_us: data_plane,
        beyond_transport_floor_us: beyond_floor,
        round_trip_minus_executor_us: us(round_trip.0) - us(direct.0),
        server_live_us: us(live.0),
    })
}
