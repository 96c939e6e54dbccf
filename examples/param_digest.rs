//! Train the fixed-point golden model (DF, FF or BP) for one epoch and print a SHA-256 of every
//! parameter word, so two builds can be shown to compute identical parameters, not only
//! identical reports (docs/performance.md):
//!
//! ```sh
//! cargo run --release --example param_digest -- builtin digits df
//! cargo run --release --example param_digest -- configs/mnist.toml mnist df --limit 2000 --set training.batch=64
//! ```
use dfforge::config::{Config, Learner as Kind};
use dfforge::data::{self, DatasetSpec};
use dfforge::fixed::baselines::{FixedBp, FixedFf};
use dfforge::fixed::model::FixedDf;
use dfforge::float::Learner;
use dfforge::train::{train, RunOptions};
use sha2::{Digest, Sha256};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() >= 3,
        "usage: param_digest CONFIG|builtin DATASET df|ff|bp [--limit N] [--set KEY=VALUE]..."
    );
    let (mut limit, mut sets) = (None, Vec::new());
    let mut rest = args[3..].iter();
    while let Some(a) = rest.next() {
        let v = rest.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--limit" => limit = Some(v.parse::<usize>()?),
            "--set" => sets.push(v),
            _ => anyhow::bail!("unknown argument {a}"),
        }
    }
    let path = (args[0] != "builtin").then(|| std::path::PathBuf::from(&args[0]));
    let mut cfg = Config::load_with(path.as_deref(), &sets)?;
    cfg.data.dataset = args[1].clone();
    cfg.algorithm.name = match args[2].as_str() {
        "df" => Kind::Df,
        "ff" => Kind::Ff,
        "bp" => Kind::Bp,
        a => anyhow::bail!("unknown learner {a}"),
    };
    cfg.training.epochs = 1;
    cfg.validate()?;
    let spec: DatasetSpec = cfg.data.dataset.parse()?;
    let dir: std::path::PathBuf =
        std::env::var_os("DFFORGE_DATA_DIR").map_or_else(|| "data".into(), Into::into);
    let mut ds = data::load(&spec, &dir)?;
    ds.truncate(limit, Some(1));
    let opts = RunOptions::from_config(&cfg);
    let mut h = Sha256::new();
    let mut words = |ws: &mut dyn Iterator<Item = i64>| ws.for_each(|w| h.update(w.to_le_bytes()));
    match cfg.algorithm.name {
        Kind::Df => {
            let mut l = FixedDf::new(&cfg)?;
            train(&mut l as &mut dyn Learner, &ds, &opts)?;
            let p = &l.params;
            for (w, b) in p.w.iter().zip(&p.b) {
                words(&mut w.data.iter().map(|&v| i64::from(v)));
                words(&mut b.iter().copied());
            }
            words(&mut p.u.data.iter().map(|&v| i64::from(v)));
        }
        Kind::Ff => {
            let mut l = FixedFf::new(&cfg)?;
            train(&mut l as &mut dyn Learner, &ds, &opts)?;
            for (w, b) in l.w.iter().zip(&l.b) {
                words(&mut w.data.iter().map(|&v| i64::from(v)));
                words(&mut b.iter().copied());
            }
        }
        Kind::Bp => {
            let mut l = FixedBp::new(&cfg)?;
            train(&mut l as &mut dyn Learner, &ds, &opts)?;
            for (w, b) in l.w.iter().zip(&l.b) {
                words(&mut w.data.iter().map(|&v| i64::from(v)));
                words(&mut b.iter().copied());
            }
        }
    }
    let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    println!("{digest}  {} {} {}", args[0], args[1], args[2]);
    Ok(())
}
