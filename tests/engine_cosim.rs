//! System co-simulation (DESIGN.md §4 step 3), bus level: the generated engine trains
//! minibatches in Verilator next to the golden model; every weight, bias, centroid,
//! goodness and β must be equal after every step.

use dfforge::config::Config;
use dfforge::driver;
use dfforge::fixed::kernels::IMat;
use dfforge::fixed::model::FixedDf;
use dfforge::rtl::engine::{Layout, RUN_TRAIN};
use dfforge::rtl::generate;
use dfforge::sim::engine::{build, EngineSim};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn tiny() -> Config {
    let mut c = Config::builtin();
    c.network.input = 12;
    c.network.hidden = vec![7, 5];
    c.network.classes = 4;
    c.algorithm.negatives_count = 2;
    c.training.batch = 3;
    c.hardware.array_rows = 2;
    c.hardware.array_cols = 3;
    c.validate().unwrap();
    c
}

fn pixels(rng: &mut ChaCha8Rng, rows: usize, cols: usize, max: i64) -> IMat {
    IMat {
        rows,
        cols,
        data: (0..rows * cols).map(|_| rng.gen_range(0..=max) as i32).collect(),
    }
}

#[test]
fn engine_trains_like_the_golden_model() {
    let cfg = tiny();
    let rtl = generate(&cfg).unwrap();
    let b = build(&rtl.modules, &rtl.tables, false).unwrap();
    eprintln!("engine build {:.1?} (cache hit {})", b.build_time, b.cache_hit);
    let lay = Layout::new(&cfg).unwrap();
    let mut sim = EngineSim::start(&b).unwrap();
    let mut fx = FixedDf::new(&cfg).unwrap();
    driver::load_params(&mut sim, &lay, &fx.params).unwrap();
    assert_eq!(driver::read_params(&mut sim, &lay).unwrap(), fx.params);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for step in 0..3 {
        let px = pixels(&mut rng, cfg.training.batch, cfg.network.input, 255);
        let labels: Vec<u32> = (0..cfg.training.batch).map(|_| rng.gen_range(0..4)).collect();
        let (trace, _) = fx.step(&px, &labels);
        driver::write_batch(&mut sim, &px, Some(&trace.forward.hyps)).unwrap();
        let (st, _, cyc) = sim.run(RUN_TRAIN, 10_000_000).unwrap();
        assert_eq!(st, 0);
        let rows = trace.forward.hyps.len();
        let g = driver::read_goodness(&mut sim, &lay, rows).unwrap();
        for (l, gl) in g.iter().enumerate() {
            assert_eq!(gl, &trace.forward.layers[l].goodness, "step {step} G layer {}", l + 1);
        }
        let beta = driver::read_beta(&mut sim, &lay, rows).unwrap();
        assert_eq!(beta, trace.beta, "step {step} beta");
        let p = driver::read_params(&mut sim, &lay).unwrap();
        assert_eq!(p.b, fx.params.b, "step {step} biases");
        assert_eq!(p.u, fx.params.u, "step {step} centroids");
        for l in 0..p.w.len() {
            assert_eq!(p.w[l], fx.params.w[l], "step {step} W{}", l + 1);
        }
        eprintln!("step {step}: {cyc} cycles, all equal");
    }
}
