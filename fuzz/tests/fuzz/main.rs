//! Every fuzz target on the stable toolchain: its corpus replayed, then its
//! seeded random cases (a bounded number by default; see
//! `conduit_fuzz::driver` for the settings and `docs/fuzzing.md` for the
//! long run). Also: the seed corpus is current, and the regressions of
//! `fuzz/regressions/` stay fixed.

mod regressions;

use conduit_fuzz::{TARGETS, corpus, driver};

/// Replays `name`'s corpus, then fuzzes it; fails with every failure found.
fn fuzz(name: &str) {
    let target = conduit_fuzz::target(name).expect("a target of that name");
    let config = driver::Config::from_env(target);
    let replayed = driver::replay_corpus(target, &config);
    let random = driver::fuzz(target, &config);
    let mut all = random.clone();
    all.cases += replayed.cases;
    all.elapsed += replayed.elapsed;
    all.failures = replayed.failures;
    for f in random.failures {
        if !all.failures.iter().any(|g| g.location == f.location) {
            all.failures.push(f);
        }
    }
    all.assert_clean();
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                fuzz(stringify!($name));
            }
        )*

        #[test]
        fn every_target_has_a_test() {
            let tested = [$(stringify!($name)),*];
            for t in TARGETS {
                assert!(tested.contains(&t.name), "target {} has no test", t.name);
            }
        }
    };
}

targets!(
    kserve_json,
    kserve_proto,
    session_run,
    pipeline_toml,
    reference,
    registry_manifest,
    tenant_limits,
    grpc_timeout,
    onnx_signature,
    http_encoding,
);

/// `fuzz/corpus/<target>/seed-*` are what `conduit_fuzz::corpus` builds;
/// `CONDUIT_FUZZ_BLESS=1` writes them.
#[test]
fn corpus_seeds_are_current() {
    let bless = std::env::var_os("CONDUIT_FUZZ_BLESS").is_some();
    let mut stale = Vec::new();
    for seed in corpus::seeds() {
        let dir = driver::corpus_dir(seed.target);
        let path = dir.join(&seed.name);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &seed.bytes).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&seed.bytes[..]) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "seed files differ from conduit_fuzz::corpus (rewrite them with \
         CONDUIT_FUZZ_BLESS=1 cargo test --release -p conduit-fuzz corpus_seeds): {stale:?}"
    );
    for t in TARGETS {
        assert!(
            !driver::read_dir(&driver::corpus_dir(t.name)).is_empty(),
            "target {} has no corpus",
            t.name
        );
    }
}

/// Seeds are real inputs: each one the decoder accepts, or (for inputs
/// meant to be refused) refuses without breaking an invariant — and no
/// seed is refused by accident of a typo.
#[test]
fn seeds_pass_their_targets() {
    for seed in corpus::seeds() {
        let target = conduit_fuzz::target(seed.target).unwrap();
        if let Err((location, message)) = driver::run_one(target, &seed.bytes) {
            panic!("seed {}/{}: {location}: {message}", seed.target, seed.name);
        }
    }
}
