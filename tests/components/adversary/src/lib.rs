//! A component that misbehaves on request: param `attack` selects how.
//! Without it (or with `none`) it echoes `x` to `y`, so it is also a
//! well-behaved component.

#[cfg(target_arch = "wasm32")]
mod component {
    use conduit_guest::bindings::conduit::compute::types as wit;
    use conduit_guest::{DataType, Error, Inputs, Outputs, Params, Processor, Signature, Tensor};
    use std::hint::black_box;

    /// A tensor the host holds (the raw `create` call; the SDK keeps tensors
    /// it makes in the component until they are returned).
    fn host_tensor(bytes: usize) -> Result<wit::Tensor, Error> {
        wit::Tensor::create(&[bytes as i64], &wit::TensorData::Uint8(vec![1u8; bytes]))
            .map_err(Error::from)
    }

    struct Adversary;

    #[inline(never)]
    fn ping(n: u64) -> u64 {
        if n == 0 {
            1
        } else {
            pong(n - 1).wrapping_mul(3).wrapping_add(n)
        }
    }

    #[inline(never)]
    fn pong(n: u64) -> u64 {
        if n == 0 {
            2
        } else {
            ping(n - 1).rotate_left(1) ^ n
        }
    }

    impl Processor for Adversary {
        fn describe() -> Signature {
            Signature::new()
                .input("x", DataType::Fp32, [-1])
                .output("y", DataType::Fp32, [-1])
        }

        fn process(mut inputs: Inputs, params: Params) -> Result<Outputs, Error> {
            let attack = params.str_or("attack", "none")?.to_string();
            match attack.as_str() {
                "none" => Ok(Outputs::new().with("y", inputs.take("x")?)),
                "loop" => {
                    let mut i = 0u64;
                    loop {
                        i = black_box(i.wrapping_add(1));
                    }
                }
                "memory" => {
                    let mut hog: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hog.push(black_box(vec![7u8; 16 << 20]));
                    }
                }
                "recursion" => {
                    let depth = params.i64_or("depth", 100_000_000)? as u64;
                    let v = ping(black_box(depth));
                    Ok(Outputs::new().with("y", Tensor::from_f32(&[1], vec![v as f32])?))
                }
                "unreachable" => core::arch::wasm32::unreachable(),
                "panic" => panic!("the adversary panicked on purpose"),
                "huge-output" => {
                    // Host-held tensors made one after another: the call's
                    // output budget stops it, not the guest's memory.
                    let mut made = Vec::new();
                    loop {
                        made.push(host_tensor(32 << 20)?);
                    }
                }
                "inline-output" => {
                    // `mib` MiB returned as data with the call's result.
                    let mib = params.i64_or("mib", 2)? as usize;
                    Ok(Outputs::new().with(
                        "y",
                        Tensor::from_u8(&[(mib << 20) as i64], vec![1; mib << 20])?,
                    ))
                }
                "many-handles" => {
                    let x = inputs.take("x")?;
                    let mut keep = Vec::new();
                    loop {
                        keep.push(x.share());
                    }
                }
                "file" => match std::fs::read("/etc/passwd") {
                    Ok(bytes) => Ok(
                        Outputs::new().with("y", Tensor::from_u8(&[bytes.len() as i64], bytes)?)
                    ),
                    Err(e) => Err(Error::internal(format!("open failed: {e}"))),
                },
                "env" => {
                    let n = std::env::vars().count();
                    Ok(Outputs::new().with("y", Tensor::from_f32(&[1], vec![n as f32])?))
                }
                "sleep" => {
                    // A blocking WASI call: epoch interruption never fires here.
                    std::thread::sleep(std::time::Duration::from_secs(30));
                    Ok(Outputs::new().with("y", inputs.take("x")?))
                }
                "keep" => {
                    // Tensors kept in a global across calls: host memory held by the
                    // instance. Answers how many this instance holds.
                    static KEPT: std::sync::Mutex<Vec<wit::Tensor>> =
                        std::sync::Mutex::new(Vec::new());
                    let t = host_tensor(4 << 20)?;
                    let mut kept = KEPT.lock().unwrap();
                    kept.push(t);
                    let n = kept.len();
                    Ok(Outputs::new().with("y", Tensor::from_f32(&[1], vec![n as f32])?))
                }
                "grow" => {
                    // Grows linear memory by `mib` and keeps it (memory never shrinks).
                    let mib = params.i64_or("mib", 32)? as usize;
                    let hold = black_box(vec![5u8; mib << 20]);
                    std::mem::forget(hold);
                    Ok(Outputs::new().with("y", inputs.take("x")?))
                }
                "grow-and-spin" => {
                    // Holds `mib` of memory while it spins until its deadline.
                    let mib = params.i64_or("mib", 32)? as usize;
                    let hold = black_box(vec![5u8; mib << 20]);
                    let mut i = 0u64;
                    loop {
                        i = black_box(i.wrapping_add(hold[i as usize % hold.len()] as u64));
                    }
                }
                "big" => {
                    // One output of `mib` MiB (inside the per-call budget).
                    let mib = params.i64_or("mib", 8)? as usize;
                    let n = (mib << 20) / 4;
                    Ok(Outputs::new().with("y", Tensor::from_f32(&[n as i64], vec![1.5; n])?))
                }
                "rank" => {
                    // A shape of a million dimensions costs the host memory, not the guest.
                    let x = inputs.take("x")?;
                    let shape = vec![1i64; 1_000_000];
                    let y = x.reshape(&shape).map_err(Error::from)?;
                    Ok(Outputs::new().with("y", y))
                }
                "wrong-output" => Ok(Outputs::new().with(
                    "y",
                    Tensor::from_strings(&[1], vec!["not FP32".to_string()])?,
                )),
                "undeclared-output" => Ok(Outputs::new()
                    .with("y", inputs.take("x")?)
                    .with("z", Tensor::from_f32(&[1], vec![0.0])?)),
                "log-forge" => {
                    conduit_guest::info("ok\nERROR conduit_host: forged line\u{1b}[31m");
                    Ok(Outputs::new().with("y", inputs.take("x")?))
                }
                "socket" => match std::net::TcpStream::connect("127.0.0.1:9") {
                    Ok(_) => Err(Error::internal("connected to a socket")),
                    Err(e) => Err(Error::internal(format!("connect failed: {e}"))),
                },
                "stdout-flood" => {
                    let line = "x".repeat(1023);
                    for _ in 0..4096 {
                        println!("{line}");
                        eprintln!("{line}");
                    }
                    conduit_guest::info(&"y".repeat(1 << 20));
                    Ok(Outputs::new().with("y", inputs.take("x")?))
                }
                "counter" => {
                    // State kept across calls: visible only when an instance is reused.
                    static CALLS: std::sync::atomic::AtomicU32 =
                        std::sync::atomic::AtomicU32::new(0);
                    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    Ok(Outputs::new().with("y", Tensor::from_f32(&[1], vec![n as f32])?))
                }
                "guest-error" => Err(Error::invalid_input("the adversary rejects this input")),
                other => Err(Error::invalid_input(format!("unknown attack `{other}`"))),
            }
        }
    }

    conduit_guest::export!(Adversary);
}
