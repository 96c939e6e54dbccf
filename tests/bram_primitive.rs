//! The block RAM as synthesis builds it against the block RAM as simulators run it.
//!
//! `dff_bram` instantiates each block in `` `ifdef SYNTHESIS ``: yosys gets
//! `dff_bram_block_ecp5` (a DP16KD with its output register), Verilator gets
//! `dff_bram_block_model`. Every other test simulates the model; this one builds `dff_bram`
//! both ways, the primitive through `bram::dp16kd_model` (the DP16KD's behaviour as Lattice
//! documents it and as yosys wires it), and requires the same read data on every cycle, at
//! every DP16KD width (1, 2, 4, 9, 18, 36 bits), one block and several, and for a memory
//! small enough to stay LUT RAM. Skips with a notice when Verilator is missing (fails
//! instead under DFFORGE_REQUIRE_TOOLS).

use dfforge::rtl::bram;
use dfforge::sim::{out_index, Build, SimError, Stim};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `dff_bram` of `w` bits and `depth` words (`aw` address bits), built for synthesis
/// (`primitive`) or for simulation.
fn build(w: u32, aw: u32, depth: u32, primitive: bool) -> Option<Build> {
    let modules = vec![
        bram::bram(w, aw),
        bram::block_model(),
        bram::block_ecp5(),
        bram::dp16kd_model(),
    ];
    let depth_flag = format!("-GDEPTH={depth}");
    let mut flags = vec![depth_flag.as_str()];
    if primitive {
        flags.push("-DSYNTHESIS");
    }
    match Build::with_harness(&modules, "dff_bram", &[], None, &flags) {
        Ok(b) => Some(b),
        Err(SimError::NoVerilator) if std::env::var_os("DFFORGE_REQUIRE_TOOLS").is_none() => {
            eprintln!("NOTICE: verilator not installed; skipping");
            None
        }
        Err(e) => panic!("dff_bram W={w} DEPTH={depth} primitive={primitive}: {e}"),
    }
}

/// Write every word, then `n` cycles of random writes and reads; the read data of every
/// cycle.
fn run(b: &Build, depth: u32, w: u32, seed: u64) -> Vec<i64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut s = Stim::new(b);
    let word = |rng: &mut ChaCha8Rng| rng.gen_range(0..(1i64 << w));
    for a in 0..depth {
        let v = word(&mut rng);
        s.cycle_v(&[("we_i", 1), ("waddr_i", i64::from(a)), ("wdata_i", v)]);
    }
    for _ in 0..3000 {
        let (wa, ra) = (rng.gen_range(0..depth), rng.gen_range(0..depth));
        let we = i64::from(rng.gen_bool(0.5) && wa != ra);
        let v = word(&mut rng);
        s.cycle_v(&[
            ("we_i", we),
            ("waddr_i", i64::from(wa)),
            ("wdata_i", v),
            ("raddr_i", i64::from(ra)),
        ]);
    }
    let i = out_index(b, "rdata_o");
    s.run()
        .unwrap()
        .iter()
        .map(|l| l[i].field(0, w, false))
        .collect()
}

#[test]
fn dp16kd_blocks_read_what_the_model_reads() {
    // (bits, address bits, words): every DP16KD width, one block and several, a depth that
    // is not a power of two, and a LUT RAM one.
    for (w, aw, depth) in [
        (1, 15, 20000),
        (2, 13, 8192),
        (3, 12, 3000),
        (8, 12, 4096),
        (9, 11, 2048),
        (16, 11, 1280),
        (18, 10, 1024),
        (27, 10, 600),
        (35, 9, 320),
        (16, 7, 128),
        (27, 5, 32),
    ] {
        let (Some(model), Some(prim)) = (build(w, aw, depth, false), build(w, aw, depth, true))
        else {
            return;
        };
        let seed = u64::from(w * 1000 + depth);
        let (want, got) = (run(&model, depth, w, seed), run(&prim, depth, w, seed));
        let bad = want.iter().zip(&got).filter(|(a, b)| a != b).count();
        eprintln!(
            "dff_bram W={w} DEPTH={depth}: {} cycles, {bad} differ",
            want.len()
        );
        assert_eq!(want.len(), got.len());
        assert_eq!(
            bad, 0,
            "W={w} DEPTH={depth}: the DP16KD blocks read other data"
        );
        // The reads are not all one value (the comparison can fail).
        let distinct: std::collections::HashSet<_> = want.iter().collect();
        assert!(distinct.len() > 1, "W={w}: the reads carry no data");
    }
}
