//! The fit estimate against measurement: every config of docs/fit-calibration.json
//! (scripts/fit-calibrate: yosys `synth_ecp5` and `nextpnr-ecp5 --pack-only` of the ULX3S
//! board top around the config's engine) is generated again and its estimate compared with
//! what the tools counted: multipliers exactly, logic cells, LUT4 and flip-flops within 15 %,
//! block RAMs never under the count and at most 30 % over (the estimate errs high: yosys
//! puts memories of a few hundred bits per bank, e.g. the Δb accumulators, in LUT RAM, by a
//! cost rule the estimate does not model).
//!
//! A change to the generator that moves the logic more than that makes this test fail; then
//! rerun scripts/fit-calibrate (minutes per config) and refit `LOGIC_MODEL` in
//! src/rtl/fit.rs from the coefficients it prints.

use dfforge::config::Config;
use serde_json::Value;
use std::path::Path;

fn calibration() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/fit-calibration.json");
    let text = std::fs::read_to_string(&p).expect("docs/fit-calibration.json");
    serde_json::from_str(&text).expect("docs/fit-calibration.json is JSON")
}

fn within(what: &str, cfg: &str, est: usize, measured: u64, tol: f64) -> Option<String> {
    let err = (est as f64 - measured as f64).abs() / measured.max(1) as f64;
    eprintln!(
        "{cfg:48} {what:6}: estimate {est:6}, measured {measured:6} ({:+.1} %)",
        100.0 * (est as f64 / measured.max(1) as f64 - 1.0)
    );
    (err > tol).then(|| {
        format!(
            "{cfg}: {what} estimate {est} vs measured {measured} ({:.1} % off, allowed {:.0} %)",
            100.0 * err,
            100.0 * tol
        )
    })
}

#[test]
fn fit_estimate_matches_the_calibration() {
    let cal = calibration();
    let rows = cal["rows"].as_array().expect("rows");
    assert!(rows.len() >= 3, "calibrate on at least three configs");
    let mut failures = Vec::new();
    for row in rows {
        let name = row["config"].as_str().unwrap();
        let cfg = Config::from_toml_str(row["toml"].as_str().unwrap(), name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let rtl = dfforge::rtl::generate(&cfg).unwrap();
        let fit = rtl.fit.expect("an engine");
        let y = &row["yosys"];
        let packed = &row["packed"];
        let n = |v: &Value| v.as_u64().unwrap();
        assert_eq!(
            fit.mult18 as u64,
            n(&y["MULT18X18D"]),
            "{name}: multipliers (census {:?})",
            fit.multipliers
        );
        failures.extend(within("LUT4", name, fit.logic.lut4, n(&y["LUT4"]), 0.15));
        failures.extend(within(
            "COMB",
            name,
            fit.logic.comb,
            n(&packed["TRELLIS_COMB"]),
            0.15,
        ));
        failures.extend(within(
            "FF",
            name,
            fit.logic.ff,
            n(&packed["TRELLIS_FF"]),
            0.15,
        ));
        let bram = n(&y["DP16KD"]);
        eprintln!(
            "{name:48} DP16KD: estimate {:6}, measured {bram:6}",
            fit.dp16kd
        );
        if (fit.dp16kd as u64) < bram || fit.dp16kd as f64 > 1.30 * bram as f64 {
            failures.push(format!(
                "{name}: DP16KD estimate {} vs measured {bram} (must be >= and within 30 %)",
                fit.dp16kd
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shipped_board_configs_are_calibration_points() {
    // The LUT estimate is held to measurement on the configs users build.
    let cal = calibration();
    let names: Vec<&str> = cal["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["config"].as_str().unwrap())
        .collect();
    for shipped in ["configs/default.toml", "configs/ulx3s-mnist.toml"] {
        assert!(
            names.contains(&shipped),
            "{shipped} is not in docs/fit-calibration.json"
        );
    }
}
