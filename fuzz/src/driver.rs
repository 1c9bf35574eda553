//! The stable-toolchain driver: replays a target's corpus, then runs seeded
//! random cases (structured inputs from the target's generator, mutations
//! of the corpus and of generated inputs, random bytes). A panic is caught,
//! minimized, written to `fuzz/artifacts/<target>/` and reported with the
//! seed and the input; the run goes on, so one known failure does not hide
//! the next.
//!
//! Settings come from the environment:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `CONDUIT_FUZZ_CASES` | random cases per target | the target's `default_cases`; unbounded with `CONDUIT_FUZZ_SECONDS` |
//! | `CONDUIT_FUZZ_SECONDS` | wall-clock budget per target | none |
//! | `CONDUIT_FUZZ_SEED` | the RNG seed (decimal or `0x` hex) | fixed per target; from the clock with `CONDUIT_FUZZ_SECONDS` |
//! | `CONDUIT_FUZZ_MAX_LEN` | longest input, in bytes | 16384 |
//! | `CONDUIT_FUZZ_ARTIFACTS` | where failing inputs are written | `fuzz/artifacts` |
//! | `CONDUIT_FUZZ_SAVE_CURRENT` | write each input to `<artifacts>/<target>/current` before running it (to catch what aborts the process: a stack overflow) | off |

use crate::Target;
use arbitrary::Unstructured;
use fastrand::Rng;
use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

/// A case slower than this is reported as a failure (a hang in the making).
pub const SLOW_CASE: Duration = Duration::from_secs(5);
/// Distinct failures (by panic location) after which a run stops.
pub const MAX_FAILURES: usize = 16;

/// How one run goes.
#[derive(Debug, Clone)]
pub struct Config {
    /// Random cases to run.
    pub cases: u64,
    /// Stop after this long, whatever `cases` says.
    pub budget: Option<Duration>,
    /// The RNG seed.
    pub seed: u64,
    /// Longest input.
    pub max_len: usize,
    /// Folder of failing inputs (one sub-folder per target).
    pub artifacts: PathBuf,
    /// Write each input before running it.
    pub save_current: bool,
}

impl Config {
    /// The settings for `target`, from the environment (see the module docs).
    ///
    /// # Panics
    /// When a variable is set but is not a number.
    pub fn from_env(target: &Target) -> Self {
        let number = |var: &str| -> Option<u64> {
            let v = std::env::var(var).ok()?;
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            Some(parsed.unwrap_or_else(|_| panic!("{var}={v:?} is not a number")))
        };
        let budget = std::env::var("CONDUIT_FUZZ_SECONDS").ok().map(|v| {
            let s: f64 = v
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("CONDUIT_FUZZ_SECONDS={v:?} is not a number"));
            Duration::from_secs_f64(s.max(0.0))
        });
        let cases = number("CONDUIT_FUZZ_CASES").unwrap_or(if budget.is_some() {
            u64::MAX
        } else {
            target.default_cases
        });
        let seed = number("CONDUIT_FUZZ_SEED").unwrap_or_else(|| {
            if budget.is_some() {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                now.as_nanos() as u64 ^ name_seed(target.name)
            } else {
                name_seed(target.name)
            }
        });
        Self {
            cases,
            budget,
            seed,
            max_len: number("CONDUIT_FUZZ_MAX_LEN").map_or(16 << 10, |n| n as usize),
            artifacts: std::env::var_os("CONDUIT_FUZZ_ARTIFACTS")
                .map(PathBuf::from)
                .unwrap_or_else(|| crate_dir().join("artifacts")),
            save_current: std::env::var_os("CONDUIT_FUZZ_SAVE_CURRENT").is_some(),
        }
    }
}

/// A fixed seed per target, so that a default run is reproducible.
fn name_seed(name: &str) -> u64 {
    let h = blake3::hash(name.as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// This crate's folder (`fuzz/`).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The corpus folder of `target`: `fuzz/corpus/<target>/`.
pub fn corpus_dir(target: &str) -> PathBuf {
    crate_dir().join("corpus").join(target)
}

/// The files of a folder, sorted by name, with their bytes (none when the
/// folder does not exist).
///
/// # Panics
/// When a file cannot be read.
pub fn read_dir(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let bytes =
                std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

/// One input that broke an invariant.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Where it panicked (`file:line`).
    pub location: String,
    /// The panic message.
    pub message: String,
    /// The (minimized) input.
    pub input: Vec<u8>,
    /// Where the input came from: a corpus file, or a case number.
    pub origin: String,
    /// The file it was written to, if any.
    pub artifact: Option<PathBuf>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target.
    pub target: &'static str,
    /// The seed of the random cases.
    pub seed: u64,
    /// Inputs run (corpus entries and random cases).
    pub cases: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// Distinct failures, by panic location.
    pub failures: Vec<Failure>,
}

impl Report {
    /// One line: the target, the cases, the time and the seed.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} inputs in {:.2} s (seed {:#x}), {} failure(s)",
            self.target,
            self.cases,
            self.elapsed.as_secs_f64(),
            self.seed,
            self.failures.len()
        )
    }

    /// Panics with every failure described, if there is one.
    ///
    /// # Panics
    /// When the run found a failure.
    pub fn assert_clean(&self) {
        if self.failures.is_empty() {
            println!("{}", self.summary());
            return;
        }
        let mut text = self.summary();
        for f in &self.failures {
            let _ = write!(text, "\n\n{}", describe(self.target, f));
        }
        let _ = write!(
            text,
            "\n\nreplay with CONDUIT_FUZZ_SEED={:#x}; add a fixed input as a regression \
             (docs/fuzzing.md)",
            self.seed
        );
        panic!("{text}");
    }
}

/// A failure for a person: where, what, and the input (escaped and hex).
pub fn describe(target: &str, f: &Failure) -> String {
    const SHOWN: usize = 2048;
    let shown = &f.input[..f.input.len().min(SHOWN)];
    let more = if f.input.len() > SHOWN { " …" } else { "" };
    let hex: String = f.input[..f.input.len().min(512)]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "[{target}] {origin}: panicked at {loc}: {msg}\n  input ({len} bytes): b\"{esc}\"{more}\n  hex: {hex}{more}\n  saved as: {saved}",
        origin = f.origin,
        loc = f.location,
        msg = f.message,
        len = f.input.len(),
        esc = shown.escape_ascii(),
        saved = f
            .artifact
            .as_ref()
            .map_or("(not saved)".to_string(), |p| p.display().to_string()),
    )
}

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static CAUGHT: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// A panic hook that, while a case runs on this thread, records the panic
/// instead of printing it; other panics print as before.
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                let location = info
                    .location()
                    .map_or("?".into(), |l| format!("{}:{}", l.file(), l.line()));
                let message = info.payload_as_str().unwrap_or("(a non-string panic)");
                CAUGHT.with(|c| *c.borrow_mut() = Some((location, message.to_string())));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs one input; `Err((location, message))` when it panicked.
///
/// # Errors
/// The panic's location and message.
pub fn run_one(target: &Target, input: &[u8]) -> Result<(), (String, String)> {
    install_hook();
    QUIET.with(|q| q.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    QUIET.with(|q| q.set(false));
    result.map_err(|_| {
        CAUGHT
            .with(|c| c.borrow_mut().take())
            .unwrap_or_else(|| ("?".into(), "a panic".into()))
    })
}

/// Runs one input, timing it: a panic or a slow case is a failure.
fn run_timed(target: &Target, input: &[u8]) -> Result<(), (String, String)> {
    let started = Instant::now();
    run_one(target, input)?;
    let took = started.elapsed();
    if took > SLOW_CASE {
        return Err((
            "slow".into(),
            format!(
                "one input took {:.1} s (over {SLOW_CASE:?})",
                took.as_secs_f64()
            ),
        ));
    }
    Ok(())
}

/// A smaller input that fails at the same place: chunks are removed while
/// the failure stays (bounded: a few thousand tries, a few seconds).
pub fn minimize(target: &Target, input: &[u8], location: &str) -> Vec<u8> {
    if location == "slow" {
        return input.to_vec();
    }
    let started = Instant::now();
    let mut best = input.to_vec();
    let mut tries = 0;
    let mut chunk = best.len().div_ceil(2).max(1);
    loop {
        let mut at = 0;
        while at < best.len() {
            if tries >= 4000 || started.elapsed() > Duration::from_secs(5) {
                return best;
            }
            tries += 1;
            let end = (at + chunk).min(best.len());
            let mut candidate = best[..at].to_vec();
            candidate.extend_from_slice(&best[end..]);
            match run_one(target, &candidate) {
                Err((loc, _)) if loc == location => best = candidate,
                _ => at += chunk,
            }
        }
        if chunk == 1 {
            return best;
        }
        chunk = chunk.div_ceil(2);
    }
}

/// Where a failing input is written: `<artifacts>/<target>/crash-<hash>`.
fn save(config: &Config, target: &str, input: &[u8]) -> Option<PathBuf> {
    let dir = config.artifacts.join(target);
    std::fs::create_dir_all(&dir).ok()?;
    let hash = blake3::hash(input).to_hex();
    let path = dir.join(format!("crash-{}", &hash[..16]));
    std::fs::write(&path, input).ok()?;
    Some(path)
}

struct Run<'a> {
    target: &'a Target,
    config: &'a Config,
    failures: Vec<Failure>,
    cases: u64,
}

impl Run<'_> {
    fn case(&mut self, input: &[u8], origin: impl FnOnce() -> String) {
        self.cases += 1;
        if self.config.save_current {
            let dir = self.config.artifacts.join(self.target.name);
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join("current"), input);
        }
        let Err((location, message)) = run_timed(self.target, input) else {
            return;
        };
        if self.failures.iter().any(|f| f.location == location) {
            return;
        }
        let input = minimize(self.target, input, &location);
        // The minimized input's own message (it may name smaller values).
        let message = match run_one(self.target, &input) {
            Err((_, m)) => m,
            Ok(()) => message,
        };
        let artifact = save(self.config, self.target.name, &input);
        self.failures.push(Failure {
            location,
            message,
            input,
            origin: origin(),
            artifact,
        });
    }

    fn full(&self) -> bool {
        self.failures.len() >= MAX_FAILURES
    }
}

/// Replays every file of `fuzz/corpus/<target>/`.
pub fn replay_corpus(target: &'static Target, config: &Config) -> Report {
    let started = Instant::now();
    let mut run = Run {
        target,
        config,
        failures: Vec::new(),
        cases: 0,
    };
    for (path, bytes) in read_dir(&corpus_dir(target.name)) {
        run.case(&bytes, || format!("corpus file {}", path.display()));
    }
    Report {
        target: target.name,
        seed: config.seed,
        cases: run.cases,
        elapsed: started.elapsed(),
        failures: run.failures,
    }
}

/// Runs `config.cases` random cases (or until the budget is spent).
pub fn fuzz(target: &'static Target, config: &Config) -> Report {
    let started = Instant::now();
    let mut rng = Rng::with_seed(config.seed);
    let corpus: Vec<Vec<u8>> = read_dir(&corpus_dir(target.name))
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    // Recent generated inputs, mutated too: they reach deeper than bytes.
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let mut run = Run {
        target,
        config,
        failures: Vec::new(),
        cases: 0,
    };
    let mut raw = Vec::new();
    for case in 0..config.cases {
        if run.full() || config.budget.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
        let roll = rng.u8(0..100);
        let seeds = if corpus.is_empty() || (roll.is_multiple_of(2) && !pool.is_empty()) {
            &pool
        } else {
            &corpus
        };
        let input = if roll < 45 || seeds.is_empty() {
            // Structured: the generator over random bytes.
            raw.clear();
            let len = rng.usize(0..=4096);
            raw.extend((0..len).map(|_| rng.u8(..)));
            let Ok(mut input) = (target.generate)(&mut Unstructured::new(&raw)) else {
                continue;
            };
            input.truncate(config.max_len);
            if pool.len() < 64 {
                pool.push(input.clone());
            } else {
                let at = rng.usize(0..pool.len());
                pool[at] = input.clone();
            }
            if roll < 10 {
                crate::mutate::mutate(&mut rng, &input, &[], target.dictionary, config.max_len)
            } else {
                input
            }
        } else if roll < 95 {
            let base = &seeds[rng.usize(0..seeds.len())];
            let other = &corpus
                .get(rng.usize(0..corpus.len().max(1)))
                .unwrap_or(base);
            crate::mutate::mutate(&mut rng, base, other, target.dictionary, config.max_len)
        } else {
            let len = rng.usize(0..=256);
            (0..len).map(|_| rng.u8(..)).collect()
        };
        run.case(&input, || format!("case {case}"));
    }
    Report {
        target: target.name,
        seed: config.seed,
        cases: run.cases,
        elapsed: started.elapsed(),
        failures: run.failures,
    }
}

/// Replays one saved input (a regression file).
///
/// # Panics
/// When the file cannot be read, or the input fails, describing it.
pub fn replay_file(target: &'static Target, path: &Path) {
    let input = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    if let Err((location, message)) = run_one(target, &input) {
        let f = Failure {
            location,
            message,
            input,
            origin: format!("regression {}", path.display()),
            artifact: Some(path.to_path_buf()),
        };
        panic!("{}", describe(target.name, &f));
    }
}
