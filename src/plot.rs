//! Training curves (loss and test accuracy per epoch) as PNG or SVG, chosen by extension.

use crate::train::EpochRecord;
use anyhow::{anyhow, bail, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// DejaVu Sans, shipped in the binary so PNG text renders without any system font.
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a known-good TrueType file compiled in; a failure would be a build defect.
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| ())
            .expect("embedded DejaVu Sans is a valid font");
    });
}

pub(crate) enum Format {
    Svg,
    Png,
}

/// The plot format named by a path's extension.
pub(crate) fn plot_format(path: &Path) -> Result<Format> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("svg") => Ok(Format::Svg),
        Some("png") => Ok(Format::Png),
        _ => bail!(
            "cannot plot to {}: the file name must end in .png or .svg",
            path.display()
        ),
    }
}

/// Refuse, before any work, a plot path with an unknown extension or that cannot be written.
pub fn check_plot_path(path: &Path) -> Result<()> {
    plot_format(path)?;
    crate::util::check_output_file(path, "--plot")
}

/// Draw a plot into `$path`, PNG or SVG by its extension, written atomically: `$draw` is
/// evaluated with `$root` bound to a drawing area of either backend and returns
/// `Result<()>`. (A macro: the drawing code is generic over the backend, a closure cannot be.)
macro_rules! render {
    ($path:expr, $size:expr, |$root:ident| $draw:expr) => {{
        use plotters::prelude::{BitMapBackend, IntoDrawingArea, SVGBackend};
        let path: &std::path::Path = $path;
        let size: (u32, u32) = $size;
        match $crate::plot::plot_format(path)? {
            $crate::plot::Format::Svg => {
                let mut text = String::new();
                {
                    let $root = SVGBackend::with_string(&mut text, size).into_drawing_area();
                    $draw?;
                    $root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
                }
                $crate::util::write_atomic(path, text.as_bytes())
            }
            $crate::plot::Format::Png => {
                let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
                {
                    let $root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
                    $draw?;
                    $root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
                }
                $crate::util::write_atomic(path, &$crate::plot::image_png(&buf, size)?)
            }
        }
    }};
}
pub(crate) use render;

/// Plot `history` (one or more labelled runs) to `path` (.png or .svg), written atomically.
pub fn plot_curves(path: &Path, title: &str, runs: &[(&str, &[EpochRecord])]) -> Result<()> {
    render!(path, (1000, 420), |root| draw(&root, title, runs))
}

/// Encode an RGB buffer as PNG via the encoder plotters already depends on.
pub(crate) fn image_png(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(rgb, w, h, image::ColorType::Rgb8)
        .map_err(|e| anyhow!("PNG encoding failed: {e}"))?;
    Ok(out)
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    runs: &[(&str, &[EpochRecord])],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    register_font();
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("plot failed: {e:?}");
    root.fill(&WHITE).map_err(e)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(e)?;
    let (left, right) = root.split_horizontally(500);
    let epochs = runs.iter().map(|(_, h)| h.len()).max().unwrap_or(1).max(1) as f64;
    let max_loss = runs
        .iter()
        .flat_map(|(_, h)| h.iter().map(|r| r.train_loss))
        .fold(1e-6f64, f64::max);
    let min_acc = runs
        .iter()
        .flat_map(|(_, h)| h.iter().map(|r| r.test_accuracy))
        .fold(1.0f64, f64::min);
    let panels: [(&DrawingArea<DB, _>, &str, f64, f64); 2] = [
        (&left, "training loss", 0.0, max_loss * 1.05),
        (&right, "test accuracy", (min_acc - 0.02).max(0.0), 1.0),
    ];
    for (pi, (area, name, lo, hi)) in panels.into_iter().enumerate() {
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(1f64..epochs.max(2.0), lo..hi)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(e)?;
        for (i, (label, hist)) in runs.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = hist
                .iter()
                .map(|r| {
                    let y = if pi == 0 {
                        r.train_loss
                    } else {
                        r.test_accuracy
                    };
                    (r.epoch as f64, y)
                })
                .collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(e)?
                .label(*label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(e)?;
    }
    Ok(())
}
