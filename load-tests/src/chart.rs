//! PNG line charts of scenario results (plotters' bitmap backend).
//!
//! Text is drawn with DejaVu Sans from the Debian package `fonts-dejavu-core`,
//! read once at run time (plotters' pure-Rust `ab_glyph` renderer needs the
//! font's bytes; no system font library is linked).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, anyhow};
use plotters::prelude::*;

/// The font file the charts use, unless `MISTRALRS_CHART_FONT` names another.
const FONT_FILE: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The font file in use.
fn font_file() -> String {
    std::env::var("MISTRALRS_CHART_FONT").unwrap_or_else(|_| FONT_FILE.to_owned())
}

/// One line: its legend and its (x, y) points.
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) points: Vec<(f64, f64)>,
}

/// A chart to draw.
pub(crate) struct Chart<'a> {
    pub(crate) title: &'a str,
    pub(crate) x_label: &'a str,
    pub(crate) y_label: &'a str,
    /// Logarithmic x axis (concurrency and session ramps).
    pub(crate) log_x: bool,
    pub(crate) series: Vec<Series>,
}

/// Loads the font once; the error says which file and package are missing.
pub(crate) fn register_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let file = font_file();
            let bytes = std::fs::read(&file)
                .map_err(|e| format!("{file} (Debian package fonts-dejavu-core): {e}"))?;
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{file} is not a usable font"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Writes `chart` as a 1000×600 PNG at `path` (call [`register_font`] first).
pub(crate) fn draw(path: &Path, chart: &Chart<'_>) -> anyhow::Result<()> {
    register_font()?;
    let points = chart.series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max, mut y_max) = (f64::MAX, f64::MIN, 0f64);
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_max = y_max.max(y);
    }
    if x_min > x_max {
        (x_min, x_max) = (0.0, 1.0);
    }
    if x_min == x_max {
        (x_min, x_max) = (x_min * 0.5, x_max * 1.5 + 1.0);
    }
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(chart.title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70);
    if chart.log_x {
        let ctx = builder
            .build_cartesian_2d((x_min.max(1e-9)..x_max).log_scale(), 0f64..y_max)
            .map_err(|e| anyhow!("{e}"))?;
        plot(ctx, chart)?;
    } else {
        let ctx = builder
            .build_cartesian_2d(x_min..x_max, 0f64..y_max)
            .map_err(|e| anyhow!("{e}"))?;
        plot(ctx, chart)?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))
}

/// Axes, one line with points per series, and the legend.
fn plot<'a, X>(
    mut ctx: ChartContext<
        'a,
        BitMapBackend<'a>,
        Cartesian2d<X, plotters::coord::types::RangedCoordf64>,
    >,
    chart: &Chart<'_>,
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    ctx.configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, s) in chart.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        ctx.draw_series(LineSeries::new(
            s.points.iter().copied(),
            color.stroke_width(2),
        ))
        .map_err(|e| anyhow!("{e}"))?
        .label(s.name.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        ctx.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| anyhow!("{e}"))?;
    }
    ctx.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
