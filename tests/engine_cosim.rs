//! System co-simulation (DESIGN.md §4 step 3), bus level: the generated engine trains
//! minibatches in Verilator next to the golden model; every weight, bias, centroid,
//! goodness, β and a prediction must be equal after every step, on seeded random configs
//! that cover the engine's options; a mutated engine must be caught.

use dfforge::config::{Config, Scheme};
use dfforge::cosim::{self, random_config, RandomBatches};
use dfforge::rtl::{generate_with, Mutation};
use dfforge::sim::engine::{build, EngineSim};

fn cosim(cfg: &Config, mutation: Mutation, steps: usize) -> cosim::CosimReport {
    cfg.validate().unwrap();
    let rtl = generate_with(cfg, mutation).unwrap();
    let b = build(&rtl.modules, &rtl.tables, false, false).unwrap();
    eprintln!(
        "engine build {:.1?} (cache hit {})",
        b.build_time, b.cache_hit
    );
    let mut sim = EngineSim::start(&b).unwrap();
    let mut fx = dfforge::fixed::model::FixedDf::new(cfg).unwrap();
    let mut data = RandomBatches::new(cfg, 11);
    let bsz = cfg.training.batch;
    // The last step is a short batch (the epoch's remainder).
    let mut batches = |s: usize| {
        data.next(if s + 1 == steps && bsz > 1 {
            bsz - 1
        } else {
            bsz
        })
    };
    cosim::run(cfg, &mut fx, &mut sim, &mut batches, steps).unwrap()
}

#[test]
fn engine_matches_golden_on_random_configs() {
    // 0: all/none/npair/df, 4: random/previous/npair/df-o, 8: hard/all/npair/df-r,
    // 13: random/previous/hinge/df-o, 15: hard/none/hinge/df-o (see random_config).
    for i in [0, 4, 8, 13, 15] {
        let cfg = random_config(2408, i);
        let rep = cosim(&cfg, Mutation::None, 3);
        eprintln!(
            "config {i}: {:?} on {}x{}, {:?}/{:?}/{:?}: {} values, {} mismatches, {:.0} cycles/step, utilisation {:.3}",
            cfg.network.widths(),
            cfg.hardware.array_rows,
            cfg.hardware.array_cols,
            cfg.algorithm.loss,
            cfg.algorithm.negatives,
            cfg.algorithm.collaboration,
            rep.values_compared,
            rep.mismatches,
            rep.cycles_per_step,
            rep.pe_utilisation
        );
        eprintln!(
            "  predicted {} cycles, measured {}",
            rep.predicted_cycles, rep.cycles
        );
        assert_eq!(
            rep.mismatches,
            0,
            "config {i}: first {}",
            rep.first_mismatch.unwrap()
        );
        assert_eq!(rep.steps, 3);
        assert_eq!(
            rep.predicted_cycles, rep.cycles,
            "config {i}: the schedule formula must predict the engine's cycles exactly"
        );
    }
}

#[test]
fn feedback_schemes_are_bit_exact_and_a_wrong_sign_is_caught() {
    // Three layers, so FB runs twice (into layer 2, then into layer 1) and the local δ_2 that
    // feeds layer 1 differs from the δ_2 that trains W_2. DF-R reads B_{l+1} from its own
    // memories; DF-O reads W_{l+1} through the diagonal banking.
    // (1: truncating formats, `previous`; 6: the default formats, no collaboration.)
    for (i, scheme) in [(1, Scheme::DfR), (6, Scheme::DfO)] {
        let mut cfg = random_config(2408, i);
        cfg.network.hidden = vec![7, 6, 5];
        assert_eq!(cfg.algorithm.scheme, scheme);
        let rep = cosim(&cfg, Mutation::None, 2);
        eprintln!(
            "{scheme:?} on {}x{}: {} values, {} mismatches",
            cfg.hardware.array_rows, cfg.hardware.array_cols, rep.values_compared, rep.mismatches
        );
        assert_eq!(
            rep.mismatches,
            0,
            "{scheme:?}: first {}",
            rep.first_mismatch.unwrap()
        );
        assert_eq!(rep.predicted_cycles, rep.cycles);
    }
    // The feedback changes the weights below the top (else the loop above proves little):
    // an engine that subtracts it instead must be caught in the first step.
    let mut cfg = random_config(2408, 1);
    cfg.network.hidden = vec![7, 6, 5];
    let bad = cosim(&cfg, Mutation::FeedbackSubtracted, 2);
    let m = bad
        .first_mismatch
        .expect("a subtracted feedback must be caught");
    eprintln!("feedback mutant caught: {m}");
    assert_eq!(m.step, 0);
}

#[test]
fn gradient_tiles_shorter_than_the_array_drain_back_to_back() {
    // The gradient GEMM streams its tiles back to back and drains each a column per cycle
    // from the PE shadows while the next streams; a tile lasts max(K, max(R, C) + 1) steps.
    // Batches of 2 and 1 make K (the samples, for W_1) shorter than either edge, so every
    // tile is padded and drains start as soon as they may; a wide array (C > R + 1) and
    // DF-O's rotated banks (one update unit per bank, stochastic rounding) on a tall one.
    for (i, (r, c)) in [(0, (2, 5)), (4, (3, 2))] {
        let mut cfg = random_config(2408, i);
        cfg.hardware.array_rows = r;
        cfg.hardware.array_cols = c;
        cfg.training.batch = 2;
        assert_eq!(
            cfg.fixed.update_rounding,
            dfforge::fixed::Rounding::Stochastic
        );
        let rep = cosim(&cfg, Mutation::None, 2);
        eprintln!(
            "{:?} {:?} on {r}x{c}: {} values, {} mismatches",
            cfg.algorithm.scheme,
            cfg.network.widths(),
            rep.values_compared,
            rep.mismatches
        );
        assert_eq!(
            rep.mismatches,
            0,
            "{r}x{c}: first {}",
            rep.first_mismatch.unwrap()
        );
        assert_eq!(rep.predicted_cycles, rep.cycles);
    }
}

#[test]
fn memories_deeper_than_16_address_bits_work() {
    // A 600-wide first layer on a 2×2 array at batch 64 (640 rows): h_1 and x̂_1 need 18-bit
    // word addresses, so every address path that carries them must be as wide as the memory.
    let mut cfg = Config::builtin();
    cfg.network.input = 16;
    cfg.network.hidden = vec![600, 8];
    cfg.training.batch = 64;
    cfg.hardware.array_rows = 2;
    cfg.hardware.array_cols = 2;
    let rep = cosim(&cfg, Mutation::None, 1);
    eprintln!(
        "deep memories: {} values, {} mismatches",
        rep.values_compared, rep.mismatches
    );
    assert_eq!(rep.mismatches, 0, "first {}", rep.first_mismatch.unwrap());
    assert_eq!(rep.predicted_cycles, rep.cycles);
}

#[test]
fn mutated_engine_is_caught() {
    // One operator changed (the ReLU/requantise unit rounds the other way): the first step
    // must differ, and the report must name where. (A PE that adds one LSB of the 2^-24
    // accumulator per MAC is rounded away before any compared value on these small layers;
    // the unit co-simulation catches that one.)
    let cfg = random_config(2408, 0);
    let rep = cosim(&cfg, Mutation::FlipActRounding, 2);
    let m = rep.first_mismatch.expect("the mutant must be caught");
    eprintln!("mutant caught: {m} ({} mismatches)", rep.mismatches);
    assert!(rep.mismatches > 0);
    assert_eq!(m.step, 0);
    assert_eq!(
        rep.steps, 1,
        "co-simulation stops at the first step with a difference"
    );
}
