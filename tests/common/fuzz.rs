//! The fuzz harness shared by tests/fuzz.rs and the IDX reader's fuzz tests
//! (`src/data/idx.rs`, which includes this file by path: the library's own tests cannot
//! import from tests/).
//!
//! Inputs come from `DFFORGE_FUZZ_SEED` (a number, or `random` for a fresh one each run), else
//! from a fixed seed, so that the normal suite tries the same inputs every time. Every run
//! prints its seed with the counts, so any run can be replayed.
#![allow(dead_code)]

use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngSeed, TestRunner};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Inputs per fuzz test: `DFFORGE_FUZZ_CASES` (the benchmark run: 10,000), else `ci`.
pub fn fuzz_cases(ci: u32) -> u32 {
    std::env::var("DFFORGE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci)
}

/// The inputs' random seed (see the module doc).
pub fn fuzz_seed() -> u64 {
    match std::env::var("DFFORGE_FUZZ_SEED").ok().as_deref() {
        Some("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        Some(v) => v.parse().expect("DFFORGE_FUZZ_SEED: a number or `random`"),
        None => 2408,
    }
}

/// Run `check` on `cases` inputs from `strategy`: a panic or a failed `prop_assert` fails
/// the test (shrunk), and with `limit` so does an input that takes longer. Prints how many
/// inputs ran and the slowest one, so a benchmark run records its counts.
pub fn fuzz<S: Strategy>(
    name: &str,
    cases: u32,
    limit: Option<Duration>,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let seed = fuzz_seed();
    let mut runner = TestRunner::new(PtConfig {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_iters: 200,
        ..PtConfig::default()
    });
    let count = Cell::new(0u32);
    let slowest = Cell::new(Duration::ZERO);
    let t0 = Instant::now();
    let r = runner.run(&strategy, |input| {
        let t = Instant::now();
        check(input)?;
        let took = t.elapsed();
        count.set(count.get() + 1);
        slowest.set(slowest.get().max(took));
        if let Some(limit) = limit {
            prop_assert!(took < limit, "an input took {took:?} (limit {limit:?})");
        }
        Ok(())
    });
    // A panic or a failed check stops the run at that input (shrunk, then reported below).
    eprintln!(
        "fuzz {name}: {} inputs (seed {}), {} panics or failed checks, slowest input {:.1?}, {:.1?} in all",
        count.get(),
        seed,
        u32::from(r.is_err()),
        slowest.get(),
        t0.elapsed()
    );
    if let Err(e) = r {
        panic!("fuzz {name}: {e}");
    }
    assert_eq!(count.get(), cases, "fuzz {name}: not every input ran");
}
