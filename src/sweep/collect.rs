//! Merging a sweep's results: one row per grid point (seeds averaged), the Pareto front of
//! accuracy against samples/s, block RAMs and LUT4, a Markdown table and a plot.

use super::measure::PointResult;
use super::pareto::{front, Goal};
use super::{finished, Job};
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use serde::Serialize;
use std::path::Path;

/// One grid point over its seeds.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub point: Vec<(String, String)>,
    pub seeds: usize,
    /// Mean, lowest and highest test accuracy over the seeds that trained.
    pub accuracy: Option<f64>,
    pub accuracy_min: Option<f64>,
    pub accuracy_max: Option<f64>,
    pub cycles_per_sample: Option<f64>,
    pub pe_utilisation: Option<f64>,
    pub clock_mhz: Option<f64>,
    pub samples_per_s: Option<f64>,
    pub dp16kd: Option<usize>,
    pub mult18: Option<usize>,
    pub lut4: Option<usize>,
    pub fits: Option<bool>,
    pub pnr_lut4: Option<u64>,
    pub pnr_dp16kd: Option<u64>,
    pub fmax_mhz: Option<f64>,
    /// The first error of any seed.
    pub error: Option<String>,
}

/// The merged sweep.
#[derive(Debug, Serialize)]
pub struct Collected {
    pub jobs: usize,
    pub finished: usize,
    pub failed: usize,
    pub rows: Vec<Row>,
    /// Indices into `rows` of the front in accuracy ↑, samples/s ↑, DP16KD ↓, LUT4 ↓,
    /// among the points that fit the board.
    pub front: Vec<usize>,
    pub results: Vec<PointResult>,
}

/// Read the results of `jobs` under `dir` (missing ones are counted, not invented).
pub fn collect(dir: &Path, jobs: &[Job]) -> Collected {
    let results: Vec<PointResult> = jobs.iter().filter_map(|j| finished(dir, j)).collect();
    let mut rows: Vec<Row> = Vec::new();
    // (sum, count) of each row's test accuracies, for the mean.
    let mut sums: Vec<(f64, usize)> = Vec::new();
    for r in &results {
        let i = match rows.iter().position(|row| row.point == r.point) {
            Some(i) => i,
            None => {
                rows.push(Row {
                    point: r.point.clone(),
                    seeds: 0,
                    accuracy: None,
                    accuracy_min: None,
                    accuracy_max: None,
                    cycles_per_sample: r.cycles_per_sample,
                    pe_utilisation: r.pe_utilisation,
                    clock_mhz: r.clock_mhz,
                    samples_per_s: r.samples_per_s,
                    dp16kd: r.dp16kd,
                    mult18: r.mult18,
                    lut4: r.lut4,
                    fits: r.fits,
                    pnr_lut4: r.pnr.as_ref().map(|p| p.lut4),
                    pnr_dp16kd: r.pnr.as_ref().map(|p| p.dp16kd),
                    fmax_mhz: r.pnr.as_ref().map(|p| p.fmax_mhz),
                    error: None,
                });
                rows.len() - 1
            }
        };
        if i == sums.len() {
            sums.push((0.0, 0));
        }
        let row = &mut rows[i];
        row.seeds += 1;
        if row.error.is_none() {
            row.error = r.errors.first().cloned();
        }
        if let Some(a) = r.test_accuracy {
            row.accuracy_min = Some(row.accuracy_min.map_or(a, |m| m.min(a)));
            row.accuracy_max = Some(row.accuracy_max.map_or(a, |m| m.max(a)));
            sums[i].0 += a;
            sums[i].1 += 1;
        }
    }
    for (row, (sum, n)) in rows.iter_mut().zip(sums) {
        if n > 0 {
            row.accuracy = Some(sum / n as f64);
        }
    }
    // A point that does not fit the board is no design choice: it is kept in the tables and
    // plots but never on the front.
    let objectives: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| {
            if r.fits == Some(false) {
                return vec![f64::NAN; 4];
            }
            vec![
                r.accuracy.unwrap_or(f64::NAN),
                r.samples_per_s.unwrap_or(f64::NAN),
                r.dp16kd.map_or(f64::NAN, |v| v as f64),
                r.lut4.map_or(f64::NAN, |v| v as f64),
            ]
        })
        .collect();
    let front = front(&objectives, &[Goal::Max, Goal::Max, Goal::Min, Goal::Min]);
    Collected {
        jobs: jobs.len(),
        finished: results.len(),
        failed: results.iter().filter(|r| !r.ok).count(),
        rows,
        front,
        results,
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("–".to_string(), |v| v.to_string())
}

/// The table of `rows` (indices `which`), best accuracy first.
pub fn table(c: &Collected, which: &[usize]) -> String {
    let keys: Vec<&str> = c
        .rows
        .first()
        .map(|r| r.point.iter().map(|(k, _)| k.as_str()).collect())
        .unwrap_or_default();
    let mut order = which.to_vec();
    order.sort_by(|&a, &b| {
        let acc = |i: usize| c.rows[i].accuracy.unwrap_or(-1.0);
        acc(b).total_cmp(&acc(a))
    });
    let pnr = order.iter().any(|&i| c.rows[i].fmax_mhz.is_some());
    let mut t = String::new();
    let mut head: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    head.extend(
        [
            "test acc (seeds)",
            "cycles/sample",
            "PE util",
            "samples/s @ MHz",
            "DP16KD",
            "MULT18",
            "LUT4 (est.)",
            "fits",
        ]
        .map(String::from),
    );
    if pnr {
        head.extend(["LUT4 (yosys)", "DP16KD (yosys)", "Fmax MHz"].map(String::from));
    }
    t += &format!("| {} |\n", head.join(" | "));
    t += &format!("|{}\n", "---|".repeat(head.len()));
    for &i in &order {
        let r = &c.rows[i];
        let mut cells: Vec<String> = r.point.iter().map(|(_, v)| v.clone()).collect();
        cells.push(match (r.accuracy, r.accuracy_min, r.accuracy_max) {
            (Some(a), Some(lo), Some(hi)) if r.seeds > 1 => {
                format!("{a:.4} ({lo:.4}–{hi:.4}, {})", r.seeds)
            }
            (Some(a), _, _) => format!("{a:.4}"),
            _ => "–".into(),
        });
        cells.push(opt(r.cycles_per_sample.map(|v| format!("{v:.0}"))));
        cells.push(opt(r.pe_utilisation.map(|v| format!("{v:.3}"))));
        cells.push(match (r.samples_per_s, r.clock_mhz) {
            (Some(s), Some(m)) => format!("{s:.0} @ {m:.1}"),
            _ => "–".into(),
        });
        cells.push(opt(r.dp16kd));
        cells.push(opt(r.mult18));
        cells.push(opt(r.lut4));
        cells.push(opt(r.fits.map(|f| if f { "yes" } else { "no" })));
        if pnr {
            cells.push(opt(r.pnr_lut4));
            cells.push(opt(r.pnr_dp16kd));
            cells.push(opt(r.fmax_mhz.map(|v| format!("{v:.1}"))));
        }
        t += &format!("| {} |\n", cells.join(" | "));
    }
    t
}

/// The summary document: counts, the front's table, every point's table, the failures.
pub fn markdown(c: &Collected, title: &str, plot: Option<&str>) -> String {
    let mut s = format!(
        "# {title}\n\n{} jobs, {} finished, {} failed. Front: the points that fit the board \
         and that no other such point beats in test accuracy, samples/s, DP16KD and LUT4 at \
         once (samples/s from the \
         schedule's cycles per sample at the measured Fmax, else at 100 MHz; DP16KD, MULT18 \
         and LUT4 from the fit estimate).\n\n",
        c.jobs, c.finished, c.failed
    );
    if let Some(p) = plot {
        s += &format!("![Pareto fronts]({p})\n\n");
    }
    s += &format!("## Pareto front ({} points)\n\n", c.front.len());
    s += &table(c, &c.front);
    let all: Vec<usize> = (0..c.rows.len()).collect();
    s += &format!("\n## Every point ({})\n\n", all.len());
    s += &table(c, &all);
    let failed: Vec<&PointResult> = c.results.iter().filter(|r| !r.ok).collect();
    if !failed.is_empty() {
        s += "\n## Failed points\n\n";
        for r in failed {
            let p: Vec<String> = r.point.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s += &format!(
                "- job {} ({}, seed {}): {}\n",
                r.index,
                p.join(", "),
                r.seed,
                r.errors.join("; ")
            );
        }
    }
    s
}

/// The three panels (accuracy against samples/s, DP16KD, LUT4), one colour per value of
/// `colour_key` (a varied key; default the first), the 2-D front of each panel (among the
/// points that fit) joined and ringed, points that do not fit hollow. `.png` or `.svg` by extension; written atomically.
pub fn plot(c: &Collected, path: &Path, title: &str, colour_key: Option<&str>) -> Result<()> {
    crate::plot::render!(path, (1500, 520), |root| draw(&root, c, title, colour_key))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    c: &Collected,
    title: &str,
    colour_key: Option<&str>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    crate::plot::register_font();
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("plot failed: {e:?}");
    root.fill(&WHITE).map_err(e)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(e)?;
    let key = colour_key.map(str::to_string).or_else(|| {
        c.rows
            .first()
            .and_then(|r| r.point.first())
            .map(|(k, _)| k.clone())
    });
    let value_of = |r: &Row| -> String {
        key.as_ref()
            .and_then(|k| r.point.iter().find(|(pk, _)| pk == k))
            .map_or(String::new(), |(_, v)| v.clone())
    };
    let mut groups: Vec<String> = Vec::new();
    for r in &c.rows {
        let v = value_of(r);
        if !groups.contains(&v) {
            groups.push(v);
        }
    }
    let panels = root.split_evenly((1, 3));
    type Axis = (&'static str, fn(&Row) -> Option<f64>, Goal);
    let axes: [Axis; 3] = [
        ("training samples/s", |r| r.samples_per_s, Goal::Max),
        (
            "DP16KD (estimate)",
            |r| r.dp16kd.map(|v| v as f64),
            Goal::Min,
        ),
        ("LUT4 (estimate)", |r| r.lut4.map(|v| v as f64), Goal::Min),
    ];
    for (pi, (area, (name, xf, goal))) in panels.iter().zip(axes).enumerate() {
        let pts: Vec<(usize, f64, f64)> = c
            .rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i, xf(r)?, r.accuracy?)))
            .filter(|(_, x, y)| x.is_finite() && y.is_finite())
            .collect();
        let (mut x0, mut x1) = pts
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p.1), hi.max(p.1))
            });
        let (mut y0, mut y1) = pts
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p.2), hi.max(p.2))
            });
        if pts.is_empty() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        let pad = |lo: f64, hi: f64| {
            let d = ((hi - lo) * 0.08).max(hi.abs() * 0.02).max(1e-3);
            (lo - d, hi + d)
        };
        let (x0, x1) = pad(x0, x1);
        let (y0, y1) = pad(y0, y1.min(1.0));
        let mut chart = ChartBuilder::on(area)
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1.max(y0 + 1e-3))
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(name)
            .y_desc("test accuracy")
            .x_labels(6)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(e)?;
        let rows2: Vec<Vec<f64>> = pts
            .iter()
            .map(|p| match c.rows[p.0].fits {
                Some(false) => vec![f64::NAN, f64::NAN],
                _ => vec![p.2, p.1],
            })
            .collect();
        let mut on = front(&rows2, &[Goal::Max, goal]);
        on.sort_by(|&a, &b| pts[a].1.total_cmp(&pts[b].1));
        let line: Vec<(f64, f64)> = on.iter().map(|&i| (pts[i].1, pts[i].2)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), BLACK.stroke_width(1)))
            .map_err(e)?;
        chart
            .draw_series(
                line.iter()
                    .map(|&(x, y)| Circle::new((x, y), 8, BLACK.stroke_width(2))),
            )
            .map_err(e)?;
        for (gi, g) in groups.iter().enumerate() {
            let colour = Palette99::pick(gi).to_rgba();
            let series = chart
                .draw_series(
                    pts.iter()
                        .filter(|p| value_of(&c.rows[p.0]) == *g)
                        .map(|p| {
                            // Hollow: does not fit the board.
                            let style = if c.rows[p.0].fits == Some(false) {
                                colour.stroke_width(1)
                            } else {
                                colour.filled()
                            };
                            Circle::new((p.1, p.2), 4, style)
                        }),
                )
                .map_err(e)?;
            if pi == 0 {
                let label = match &key {
                    Some(k) => format!("{k} = {g}"),
                    None => g.clone(),
                };
                series.label(label).legend(move |(x, y)| {
                    Circle::new((x + 6, y), 4, Palette99::pick(gi).to_rgba().filled())
                });
            }
        }
        if pi == 0 && !groups.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(e)?;
        }
    }
    Ok(())
}
