//! Line charts as PNG files, drawn with plotters and a font shipped in the repository (no
//! system font library is needed).

use crate::FigureError;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");

static REGISTER: Once = Once::new();

/// One named line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its label in the legend.
    pub name: String,
    /// The (x, y) points in drawing order; non-finite ones are left out.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series named `name` through `points`.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series { name: name.into(), points }
    }
}

/// How the y axis is scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum YScale {
    /// Plain linear axis.
    Linear,
    /// Log10; non-positive points are left out.
    Log,
}

/// A chart's text and axes.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    /// Printed above the plot.
    pub title: &'a str,
    /// The x axis's label (with its unit).
    pub x_label: &'a str,
    /// The y axis's label (with its unit).
    pub y_label: &'a str,
    /// Linear or logarithmic y axis.
    pub y_scale: YScale,
    /// Fixed y range; `None` fits the data.
    pub y_range: Option<(f64, f64)>,
}

const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

fn register() {
    REGISTER.call_once(|| {
        // The bytes are our own shipped file; a failure here is a broken checkout.
        if register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            panic!("assets/DejaVuSans.ttf is not a valid font: the checkout is damaged");
        }
    });
}

/// Draws `series` as lines into a 1000 x 600 PNG at `path`.
pub fn line_chart(path: &Path, chart: &Chart<'_>, series: &[Series]) -> Result<(), FigureError> {
    register();
    let keep =
        |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (chart.y_scale == YScale::Linear || y > 0.0);
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied().filter(keep)).collect();
    if all.is_empty() {
        return Err(FigureError::NoPoints { title: chart.title.to_string() });
    }
    let (mut x0, mut x1) = bounds(all.iter().map(|p| p.0));
    let (mut y0, mut y1) = chart.y_range.unwrap_or_else(|| bounds(all.iter().map(|p| p.1)));
    widen(&mut x0, &mut x1);
    if chart.y_range.is_none() {
        match chart.y_scale {
            YScale::Linear => widen(&mut y0, &mut y1),
            // Pad a log axis by a factor, not an offset: an offset can push the lower bound
            // to or below zero and squash every line against the top of the chart.
            YScale::Log => {
                let pad = if y1 / y0 < 1.0 + 1e-12 { 2.0 } else { (y1 / y0).powf(0.03) };
                y0 /= pad;
                y1 *= pad;
            }
        }
    }
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    // The plotting library's errors carry no path: the message is kept, the path added here.
    let draw = |root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>| -> Result<(), String> {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(chart.title, ("sans-serif", 24))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(80);
        match chart.y_scale {
            YScale::Linear => {
                let ctx = builder.build_cartesian_2d(x0..x1, y0..y1).map_err(|e| e.to_string())?;
                draw_lines(ctx, chart, series, &keep)?;
            }
            YScale::Log => {
                let y0 = y0.max(f64::MIN_POSITIVE);
                let ctx =
                    builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale()).map_err(|e| e.to_string())?;
                draw_lines(ctx, chart, series, &keep)?;
            }
        }
        Ok(())
    };
    draw(&root)
        .and_then(|()| root.present().map_err(|e| e.to_string()))
        .map_err(|message| FigureError::Draw { path: path.to_path_buf(), message })
}

fn draw_lines<'b, Y>(
    mut ctx: ChartContext<'b, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, Y>>,
    chart: &Chart<'_>,
    series: &[Series],
    keep: &dyn Fn(&(f64, f64)) -> bool,
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    ctx.configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    for (k, s) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        ctx.draw_series(LineSeries::new(
            s.points.iter().copied().filter(|p| keep(p)),
            colour.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?
        .label(s.name.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    ctx.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

fn widen(lo: &mut f64, hi: &mut f64) {
    if *hi - *lo < 1e-12 {
        let pad = if lo.abs() > 0.0 { lo.abs() * 0.05 } else { 1.0 };
        *lo -= pad;
        *hi += pad;
    } else {
        let pad = (*hi - *lo) * 0.03;
        *lo -= pad;
        *hi += pad;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_and_rejects_empty_charts() {
        let dir = std::env::temp_dir().join(format!("agora-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chart.png");
        let chart = Chart { title: "t", x_label: "x", y_label: "y", y_scale: YScale::Log, y_range: None };
        let s = Series::new("a", vec![(0.0, 1.0), (1.0, 0.5), (2.0, 0.0)]);
        line_chart(&path, &chart, &[s]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let empty = Series::new("e", vec![(0.0, f64::NAN)]);
        assert!(line_chart(&dir.join("e.png"), &chart, &[empty]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
