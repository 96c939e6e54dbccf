//! hdl/<config>/ holds the committed RTL of each shipped config; regenerating must give the
//! same bytes. Also lints every generated file with `verilator --lint-only -Wall`.

use dfforge::config::Config;
use dfforge::rtl::generate;
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_hdl_matches_regeneration() {
    for (cfg, dir) in [
        ("configs/default.toml", "hdl/default"),
        ("configs/mnist.toml", "hdl/mnist"),
    ] {
        let c = Config::load(Some(&root().join(cfg))).unwrap();
        let rtl = generate(&c).unwrap();
        let dir = root().join(dir);
        let mut want: Vec<String> = rtl.files().into_iter().map(|(n, _)| n).collect();
        want.sort();
        let mut have: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; run `dfforge gen --config {cfg} --out {}`",
                    dir.display(),
                    dir.display()
                )
            })
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        have.sort();
        assert_eq!(
            have,
            want,
            "{}: file list differs; regenerate with dfforge gen",
            dir.display()
        );
        for (name, text) in rtl.files() {
            let on_disk = std::fs::read_to_string(dir.join(&name)).unwrap();
            assert!(on_disk == text, "{}/{name} differs from the generator's output; regenerate with `dfforge gen --config {cfg} --out {}`", dir.display(), dir.display());
        }
    }
}

#[test]
fn every_generated_module_lints_clean() {
    if Command::new("verilator").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("DFFORGE_REQUIRE_TOOLS").is_none(),
            "verilator required"
        );
        eprintln!("NOTICE: verilator not installed; skipping");
        return;
    }
    for cfg in ["configs/default.toml", "configs/mnist.toml"] {
        let c = Config::load(Some(&root().join(cfg))).unwrap();
        let rtl = generate(&c).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        rtl.write(tmp.path()).unwrap();
        // The DP16KD (a primitive, not an output file) as its simulation model, so that the
        // block RAM's synthesis view lints too.
        let dp16kd = dfforge::rtl::bram::dp16kd_model();
        std::fs::write(
            tmp.path().join(dfforge::hdl::file_name(&dp16kd)),
            dfforge::hdl::emit(&dp16kd),
        )
        .unwrap();
        let mut vfiles: Vec<String> = rtl.modules.iter().map(dfforge::hdl::file_name).collect();
        vfiles.push(dfforge::hdl::file_name(&dp16kd));
        for m in &rtl.modules {
            // A module with an `ifdef SYNTHESIS` (or under one) lints as both views.
            let text = dfforge::hdl::emit(m);
            let views: &[&[&str]] =
                if text.contains("`ifdef SYNTHESIS") || m.name == dfforge::rtl::bram::BLOCK_ECP5 {
                    &[&[], &["-DSYNTHESIS"]]
                } else {
                    &[&[]]
                };
            for view in views {
                let out = Command::new("verilator")
                    .current_dir(tmp.path())
                    .args(["--lint-only", "-Wall", "--top-module", &m.name])
                    .args(*view)
                    .args(&vfiles)
                    .output()
                    .unwrap();
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(
                    out.status.success() && text.trim().is_empty(),
                    "{cfg}: lint of {} {view:?}:\n{text}",
                    m.name
                );
            }
        }
    }
}
