//! Line charts, scatter plots and bar charts.

use std::ops::Range;
use std::path::Path;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{de, fmt_num, render, rgb, Canvas, PlotError, FONT};

/// One named line of a [`line_chart`], e.g. the training loss per epoch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// Legend entry; an empty name leaves the series out of the legend.
    pub name: String,
    /// `(x, y)` points in drawing order; points with a non-finite coordinate are skipped.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series named `name` with `points`.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
        }
    }
}

/// Options of a [`line_chart`].
#[derive(Debug, Clone, PartialEq)]
pub struct LineOptions {
    /// Figure width in pixels (default 900).
    pub width: u32,
    /// Figure height in pixels (default 540).
    pub height: u32,
    /// Logarithmic y axis (whole decades); points with `y <= 0` are skipped.
    pub log_y: bool,
    /// Optional vertical dashed marker at `x` with a legend label, e.g. the best epoch.
    pub marker_x: Option<(f64, String)>,
}

impl Default for LineOptions {
    fn default() -> Self {
        Self {
            width: 900,
            height: 540,
            log_y: false,
            marker_x: None,
        }
    }
}

/// One labelled group of points of a [`scatter`] plot, e.g. "good" or "defective", or
/// one DBSCAN cluster.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScatterGroup {
    /// Legend entry (the point count is appended). A group named `noise` (any case) or
    /// `-1` is drawn as black crosses on top of the others, so DBSCAN noise stands out.
    pub name: String,
    /// `(x, y)` points; points with a non-finite coordinate are skipped.
    pub points: Vec<(f64, f64)>,
}

impl ScatterGroup {
    /// A group named `name` with `points`.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
        }
    }
}

/// Font sizes scaled to the figure (reference: 900×540).
struct Fonts {
    title: f64,
    axis: f64,
    tick: f64,
    legend: f64,
    scale: f64,
}

fn fonts((w, h): (u32, u32)) -> Fonts {
    let s = (f64::from(w) / 900.0)
        .min(f64::from(h) / 540.0)
        .clamp(0.5, 3.0);
    // Text shrinks less than the figure, so small figures stay readable.
    let t = s.max(0.8);
    Fonts {
        title: 24.0 * t,
        axis: 17.0 * t,
        tick: 14.0 * t,
        legend: 15.0 * t,
        scale: s,
    }
}

/// Keeps the points with finite coordinates (and `y > 0` on a log axis).
fn clean(points: &[(f64, f64)], log_y: bool) -> Vec<(f64, f64)> {
    points
        .iter()
        .copied()
        .filter(|&(x, y)| x.is_finite() && y.is_finite() && (!log_y || y > 0.0))
        .collect()
}

/// `min..max` of `values`, padded by `frac` of the span on each side; a degenerate range
/// (one value, all equal) is padded to a visible width; no values give `0..1`.
fn padded_range(values: impl Iterator<Item = f64>, frac: f64) -> Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return 0.0..1.0;
    }
    let span = hi - lo;
    if !span.is_finite() {
        return lo..hi; // astronomically wide data; leave it unpadded
    }
    if span <= f64::EPSILON * lo.abs().max(hi.abs()).max(f64::MIN_POSITIVE) * 16.0 {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad)..(hi + pad);
    }
    (lo - span * frac)..(hi + span * frac)
}

/// Tick positions (in log10 units) for a log axis spanning `range` (also in log10 units):
/// bold ticks at 1, 2, 5 × 10^k (only decades when that gives too many, evenly spaced
/// values when the range holds fewer than two), light ticks at 1…9 × 10^k.
fn log_ticks(range: &Range<f64>) -> (Vec<f64>, Vec<f64>) {
    let (lo, hi) = (range.start, range.end);
    if !(lo.is_finite() && hi.is_finite() && hi > lo) {
        return (vec![], vec![]);
    }
    let candidates = |mantissas: &[f64]| -> Vec<f64> {
        let mut out = Vec::new();
        let (k0, k1) = (lo.floor() as i64, hi.ceil() as i64);
        if k1 - k0 > 400 {
            return out;
        }
        for k in k0..=k1 {
            for m in mantissas {
                let v = m.log10() + k as f64;
                if v >= lo && v <= hi {
                    out.push(v);
                }
            }
        }
        out
    };
    let mut bold = candidates(&[1.0, 2.0, 5.0]);
    if bold.len() > 12 {
        bold = candidates(&[1.0]);
        let step = bold.len().div_ceil(10).max(1);
        bold = bold.into_iter().step_by(step).collect();
    }
    if bold.len() < 2 {
        bold = candidates(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    }
    if bold.len() < 2 {
        bold = (0..=4)
            .map(|i| lo + (hi - lo) * f64::from(i) / 4.0)
            .collect();
    }
    let light = if hi - lo <= 6.0 {
        candidates(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    } else {
        candidates(&[1.0])
    };
    (bold, light)
}

/// A y axis over `f64` whose tick positions can be given explicitly (used for log axes,
/// where the data are plotted as log10 values); otherwise plotters' linear ticks.
struct TickAxis {
    inner: RangedCoordf64,
    ticks: Option<(Vec<f64>, Vec<f64>)>,
}

impl Ranged for TickAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        match &self.ticks {
            Some((bold, light)) => {
                if hint.weight().allow_light_points() {
                    light.clone()
                } else {
                    bold.clone()
                }
            }
            None => self.inner.key_points(hint),
        }
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
    }
}

/// A tick formatter for a linear axis over `range`: as many decimals as the tick step
/// needs, float noise around zero printed as `0`.
fn linear_ticks(range: &Range<f64>) -> impl Fn(&f64) -> String {
    let span = (range.end - range.start).abs();
    let mag = range.start.abs().max(range.end.abs());
    let step = span / 10.0;
    let decimals = if step > 0.0 && step.is_finite() {
        (-step.log10().floor()).clamp(0.0, 12.0) as usize
    } else {
        2
    };
    let scientific = !(1e-4..1e6).contains(&mag);
    move |v: &f64| {
        let v = *v;
        if v.abs() <= span * 1e-9 {
            "0".to_string()
        } else if scientific {
            fmt_num(v, 4)
        } else {
            let s = format!("{v:.decimals$}");
            if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                s
            }
        }
    }
}

/// Label of a log-axis tick at `v` (a log10 value).
fn log_label(v: &f64) -> String {
    fmt_num(10f64.powf(*v), 3)
}

fn text_width(root: &Canvas<'_>, text: &str, size: f64) -> u32 {
    root.estimate_text_size(text, &(FONT, size).into_text_style(root))
        .map(|(w, _)| w)
        .unwrap_or((text.chars().count() as f64 * size * 0.6) as u32)
}

/// `text`, shortened with an ellipsis until it is at most `max_w` pixels wide.
pub(crate) fn fit_text(root: &Canvas<'_>, text: &str, size: f64, max_w: u32) -> String {
    if text_width(root, text, size) <= max_w {
        return text.to_string();
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let s: String = chars.iter().collect::<String>() + "…";
        if text_width(root, &s, size) <= max_w {
            return s;
        }
    }
    String::new()
}

/// Width of the y label area: the widest of a few tick labels plus the axis description.
fn y_area_width(root: &Canvas<'_>, f: &Fonts, samples: &[String]) -> u32 {
    let widest = samples
        .iter()
        .map(|s| text_width(root, s, f.tick))
        .max()
        .unwrap_or(0);
    widest + (f.axis * 1.6) as u32 + (12.0 * f.scale) as u32
}

fn draw_no_data(
    root: &Canvas<'_>,
    area: (Range<i32>, Range<i32>),
    f: &Fonts,
) -> Result<(), String> {
    let (xr, yr) = area;
    let center = ((xr.start + xr.end) / 2, (yr.start + yr.end) / 2);
    let style = TextStyle::from((FONT, f.axis).into_font())
        .color(&RGBColor(120, 120, 120))
        .pos(Pos::new(HPos::Center, VPos::Center));
    root.draw(&Text::new("no data", center, style)).map_err(de)
}

/// Draws a line chart, e.g. train vs validation loss per epoch, to a PNG at `path`.
///
/// Each series gets the next colour of [`super::PALETTE`] and a legend entry (when named);
/// short series (≤ 60 points) also get dot markers, so a single point is visible.
/// Non-finite points are skipped (and `y <= 0` with `opts.log_y`); degenerate ranges are
/// padded; without any finite point a framed "no data" chart is drawn. An optional dashed
/// vertical marker (`opts.marker_x`) shows e.g. the best epoch, with its label in the
/// legend. Errors: a zero or oversized figure, or the file cannot be written.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    opts: &LineOptions,
) -> Result<(), PlotError> {
    let size = (opts.width, opts.height);
    let cleaned: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|s| (s.name.as_str(), clean(&s.points, opts.log_y)))
        .collect();
    let marker = opts
        .marker_x
        .as_ref()
        .filter(|(x, _)| x.is_finite())
        .map(|(x, label)| (*x, label.as_str()));
    // A log axis plots log10(y) on a linear scale with 1-2-5 ticks labelled 10^v.
    let cleaned: Vec<(&str, Vec<(f64, f64)>)> = if opts.log_y {
        cleaned
            .into_iter()
            .map(|(n, p)| (n, p.into_iter().map(|(x, y)| (x, y.log10())).collect()))
            .collect()
    } else {
        cleaned
    };
    let all = || cleaned.iter().flat_map(|(_, p)| p.iter().copied());
    let x_range = padded_range(all().map(|p| p.0).chain(marker.map(|m| m.0)), 0.02);
    let y_range = padded_range(all().map(|p| p.1), 0.05);
    let y_range = if opts.log_y && all().next().is_none() {
        0.0..1.0 // 1..10
    } else {
        y_range
    };
    let spec = LineSpec {
        title,
        x_label,
        y_label,
        series: &cleaned,
        marker,
    };
    render(path, size, None, |root| {
        root.fill(&WHITE).map_err(de)?;
        let axis = TickAxis {
            inner: y_range.clone().into(),
            ticks: opts.log_y.then(|| log_ticks(&y_range)),
        };
        if opts.log_y {
            draw_lines(root, &spec, x_range, y_range, axis, &log_label)
        } else {
            let ticks = linear_ticks(&y_range);
            draw_lines(root, &spec, x_range, y_range, axis, &ticks)
        }
    })
}

struct LineSpec<'s> {
    title: &'s str,
    x_label: &'s str,
    y_label: &'s str,
    series: &'s [(&'s str, Vec<(f64, f64)>)],
    marker: Option<(f64, &'s str)>,
}

fn draw_lines(
    root: &Canvas<'_>,
    spec: &LineSpec<'_>,
    x_range: Range<f64>,
    y_range: Range<f64>,
    y_coord: TickAxis,
    y_fmt: &dyn Fn(&f64) -> String,
) -> Result<(), String> {
    let f = fonts(root.dim_in_pixel());
    let x_fmt = linear_ticks(&x_range);
    let samples = [
        y_fmt(&y_range.start),
        y_fmt(&y_range.end),
        y_fmt(&((y_range.start + y_range.end) / 2.0)),
        y_fmt(&(y_range.start + (y_range.end - y_range.start) * 0.13)),
    ];
    let mut builder = ChartBuilder::on(root);
    if !spec.title.is_empty() {
        builder.caption(
            spec.title,
            (FONT, f.title).into_font().style(FontStyle::Bold),
        );
    }
    builder
        .margin((14.0 * f.scale) as u32)
        .margin_right((24.0 * f.scale) as u32)
        .x_label_area_size((f.tick * 1.6 + f.axis * 1.8) as u32)
        .y_label_area_size(y_area_width(root, &f, &samples));
    let mut chart = builder
        .build_cartesian_2d(x_range.clone(), y_coord)
        .map_err(de)?;
    chart
        .configure_mesh()
        .x_desc(spec.x_label)
        .y_desc(spec.y_label)
        .axis_desc_style((FONT, f.axis))
        .label_style((FONT, f.tick))
        .light_line_style(RGBColor(247, 247, 247))
        .bold_line_style(RGBColor(214, 214, 214))
        .x_labels(10)
        .y_labels(10)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(y_fmt)
        .draw()
        .map_err(de)?;

    let stroke = (2.0 * f.scale).round().max(1.0) as u32;
    let dot = (3.0 * f.scale).round().max(2.0) as i32;
    let legend_len = legend_sample(&f);
    let mut labelled = false;
    for (i, (name, points)) in spec.series.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let color = rgb(i);
        let anno = chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(stroke),
            ))
            .map_err(de)?;
        if !name.is_empty() {
            labelled = true;
            anno.label(*name).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + legend_len, y)], color.stroke_width(3))
            });
        }
        if points.len() <= 60 {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, dot, color.filled())))
                .map_err(de)?;
        }
    }
    if let Some((mx, label)) = spec.marker {
        let dark = RGBColor(40, 40, 40);
        let anno = chart
            .draw_series(DashedLineSeries::new(
                vec![(mx, y_range.start), (mx, y_range.end)],
                (8.0 * f.scale) as i32,
                (5.0 * f.scale) as i32,
                dark.stroke_width(stroke),
            ))
            .map_err(de)?;
        if !label.is_empty() {
            labelled = true;
            anno.label(label).legend(move |c| {
                EmptyElement::at(c)
                    + PathElement::new(vec![(0, 0), (legend_len * 2 / 5, 0)], dark.stroke_width(2))
                    + PathElement::new(
                        vec![(legend_len * 3 / 5, 0), (legend_len, 0)],
                        dark.stroke_width(2),
                    )
            });
        }
    }
    if spec.series.iter().all(|(_, p)| p.is_empty()) {
        draw_no_data(root, chart.plotting_area().get_pixel_range(), &f)?;
    }
    if labelled {
        draw_legend(&mut chart, &f)?;
    }
    Ok(())
}

/// Length in pixels of a legend's sample line.
fn legend_sample(f: &Fonts) -> i32 {
    (22.0 * f.scale).round().max(12.0) as i32
}

fn draw_legend<'a, X, Y>(
    chart: &mut ChartContext<'a, super::text::TextBackend<'a>, Cartesian2d<X, Y>>,
    f: &Fonts,
) -> Result<(), String>
where
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .margin((10.0 * f.scale) as u32)
        .legend_area_size((legend_sample(f) + (8.0 * f.scale) as i32) as u32)
        .background_style(WHITE.mix(0.88))
        .border_style(RGBColor(170, 170, 170))
        .label_font((FONT, f.legend))
        .draw()
        .map_err(de)
}

fn is_noise(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("noise") || name.trim() == "-1"
}

/// Draws a scatter plot of 2-D points grouped by label (e.g. PCA or t-SNE of embeddings,
/// good vs defective, DBSCAN clusters) to a PNG at `path`, `size` = (width, height).
///
/// Each group gets the next colour of [`super::PALETTE`] and a legend entry with its point
/// count; a group named `noise` or `-1` is drawn as black crosses on top. Non-finite
/// points are skipped; degenerate ranges are padded; without any finite point a framed
/// "no data" chart is drawn. Errors: a zero or oversized figure, or the file cannot be
/// written.
pub fn scatter(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    groups: &[ScatterGroup],
    size: (u32, u32),
) -> Result<(), PlotError> {
    let cleaned: Vec<(&str, Vec<(f64, f64)>)> = groups
        .iter()
        .map(|g| (g.name.as_str(), clean(&g.points, false)))
        .collect();
    let all = || cleaned.iter().flat_map(|(_, p)| p.iter().copied());
    let total = all().count();
    let x_range = padded_range(all().map(|p| p.0), 0.05);
    let y_range = padded_range(all().map(|p| p.1), 0.05);
    render(path, size, None, |root| {
        root.fill(&WHITE).map_err(de)?;
        let f = fonts(size);
        let x_fmt = linear_ticks(&x_range);
        let y_fmt = linear_ticks(&y_range);
        let samples = [
            y_fmt(&y_range.start),
            y_fmt(&y_range.end),
            y_fmt(&(y_range.start + (y_range.end - y_range.start) * 0.13)),
        ];
        let mut builder = ChartBuilder::on(root);
        if !title.is_empty() {
            builder.caption(title, (FONT, f.title).into_font().style(FontStyle::Bold));
        }
        builder
            .margin((14.0 * f.scale) as u32)
            .margin_right((24.0 * f.scale) as u32)
            .x_label_area_size((f.tick * 1.6 + f.axis * 1.8) as u32)
            .y_label_area_size(y_area_width(root, &f, &samples));
        let mut chart = builder
            .build_cartesian_2d(x_range.clone(), y_range.clone())
            .map_err(de)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .axis_desc_style((FONT, f.axis))
            .label_style((FONT, f.tick))
            .light_line_style(RGBColor(247, 247, 247))
            .bold_line_style(RGBColor(214, 214, 214))
            .x_labels(10)
            .y_labels(10)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .draw()
            .map_err(de)?;

        let radius = match total {
            0..=3000 => 3.0,
            3001..=20000 => 2.0,
            _ => 1.0,
        };
        let radius = (radius * f.scale).round().max(1.0) as i32;
        let legend_r = (4.0 * f.scale).round().max(2.0) as i32;
        let mut labelled = false;
        // Clusters first, in palette order; noise groups last so they stay visible.
        let mut color_index = 0;
        let mut order: Vec<(usize, Option<RGBColor>)> = Vec::new();
        for (i, (name, _)) in cleaned.iter().enumerate() {
            if !is_noise(name) {
                order.push((i, Some(rgb(color_index))));
                color_index += 1;
            }
        }
        order.extend(
            cleaned
                .iter()
                .enumerate()
                .filter(|(_, (name, _))| is_noise(name))
                .map(|(i, _)| (i, None)),
        );
        for (i, color) in order {
            let (name, points) = &cleaned[i];
            let label = if name.is_empty() {
                None
            } else {
                Some(format!("{name} ({})", points.len()))
            };
            let anno = match color {
                Some(color) => {
                    let anno = chart
                        .draw_series(
                            points
                                .iter()
                                .map(|&p| Circle::new(p, radius, color.filled())),
                        )
                        .map_err(de)?;
                    if let Some(label) = label {
                        anno.label(label)
                            .legend(move |c| Circle::new(c, legend_r, color.filled()));
                        labelled = true;
                    }
                    continue;
                }
                None => chart
                    .draw_series(
                        points
                            .iter()
                            .map(|&p| Cross::new(p, radius + 1, BLACK.stroke_width(1))),
                    )
                    .map_err(de)?,
            };
            if let Some(label) = label {
                anno.label(label)
                    .legend(move |c| Cross::new(c, legend_r, BLACK.stroke_width(2)));
                labelled = true;
            }
        }
        if total == 0 {
            draw_no_data(root, chart.plotting_area().get_pixel_range(), &f)?;
        }
        if labelled {
            draw_legend(&mut chart, &f)?;
        }
        Ok(())
    })
}

/// Draws a bar chart of named values (e.g. latency per model and precision) to a PNG at
/// `path`, `size` = (width, height).
///
/// Bars take the colours of [`super::PALETTE`] in order, carry their value on top and
/// their name below (shortened with "…" when it does not fit). Negative values hang below
/// a zero line; a non-finite value leaves an empty slot marked "n/a"; no bars give a
/// framed "no data" chart. Errors: a zero or oversized figure, or the file cannot be
/// written.
pub fn bar_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    bars: &[(String, f64)],
    size: (u32, u32),
) -> Result<(), PlotError> {
    let n = bars.len();
    let finite = || bars.iter().map(|b| b.1).filter(|v| v.is_finite());
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for v in finite() {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let span = hi - lo;
    let y_range = if !span.is_finite() {
        lo..hi
    } else if span == 0.0 {
        0.0..1.0
    } else {
        let lo = if lo < 0.0 { lo - span * 0.12 } else { 0.0 };
        let hi = if hi > 0.0 { hi + span * 0.12 } else { 0.0 };
        lo..hi
    };
    let x_range = if n == 0 {
        0.0..1.0
    } else {
        -0.5..(n as f64 - 0.5)
    };
    render(path, size, None, |root| {
        root.fill(&WHITE).map_err(de)?;
        let f = fonts(size);
        let y_fmt = linear_ticks(&y_range);
        let samples = [
            y_fmt(&y_range.start),
            y_fmt(&y_range.end),
            y_fmt(&(y_range.start + (y_range.end - y_range.start) * 0.13)),
        ];
        let mut builder = ChartBuilder::on(root);
        if !title.is_empty() {
            builder.caption(title, (FONT, f.title).into_font().style(FontStyle::Bold));
        }
        builder
            .margin((14.0 * f.scale) as u32)
            .margin_right((24.0 * f.scale) as u32)
            .x_label_area_size((f.tick * 2.4) as u32)
            .y_label_area_size(y_area_width(root, &f, &samples));
        let mut chart = builder
            .build_cartesian_2d(x_range.clone(), y_range.clone())
            .map_err(de)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_label_formatter(&|_| String::new())
            .y_desc(y_label)
            .axis_desc_style((FONT, f.axis))
            .label_style((FONT, f.tick))
            .light_line_style(RGBColor(247, 247, 247))
            .bold_line_style(RGBColor(214, 214, 214))
            .y_labels(10)
            .y_label_formatter(&y_fmt)
            .draw()
            .map_err(de)?;
        if n == 0 {
            return draw_no_data(root, chart.plotting_area().get_pixel_range(), &f);
        }
        if y_range.start < 0.0 {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x_range.start, 0.0), (x_range.end, 0.0)],
                    BLACK.stroke_width(1),
                )))
                .map_err(de)?;
        }
        let (px_range, _) = chart.plotting_area().get_pixel_range();
        let slot_px = ((px_range.end - px_range.start) as f64 / n as f64).max(1.0);
        let label_max = (slot_px - 6.0).max(0.0) as u32;
        let value_style = TextStyle::from((FONT, f.tick * 0.9).into_font()).color(&BLACK);
        let name_style = TextStyle::from((FONT, f.tick).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        let show_values = slot_px >= 18.0;
        let gap = (4.0 * f.scale) as i32;
        for (i, (name, v)) in bars.iter().enumerate() {
            let x = i as f64;
            if v.is_finite() {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x - 0.38, 0.0), (x + 0.38, *v)],
                        rgb(i).filled(),
                    )))
                    .map_err(de)?;
            }
            if show_values {
                let text = fit_text(root, &fmt_num(*v, 4), f.tick * 0.9, label_max);
                let (px, py) = chart.backend_coord(&(x, if v.is_finite() { *v } else { 0.0 }));
                let (anchor, dy) = if v.is_finite() && *v < 0.0 {
                    (VPos::Top, gap)
                } else {
                    (VPos::Bottom, -gap)
                };
                let style = value_style.pos(Pos::new(HPos::Center, anchor));
                root.draw(&Text::new(text, (px, py + dy), style))
                    .map_err(de)?;
            }
            let text = fit_text(root, name, f.tick, label_max);
            let (px, _) = chart.backend_coord(&(x, y_range.start));
            let py = chart.plotting_area().get_pixel_range().1.end + gap;
            root.draw(&Text::new(text, (px, py), name_style.clone()))
                .map_err(de)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_padded_and_safe() {
        assert_eq!(padded_range(std::iter::empty(), 0.05), 0.0..1.0);
        let r = padded_range([2.0, 2.0].into_iter(), 0.05);
        assert!(r.start < 2.0 && r.end > 2.0);
        let r = padded_range([0.0].into_iter(), 0.05);
        assert_eq!(r, -1.0..1.0);
        let r = padded_range([f64::NAN, 1.0, 3.0, f64::INFINITY].into_iter(), 0.0);
        assert_eq!(r, 1.0..3.0);
        // 0.06 .. 1.3: ticks at 0.1, 0.2, 0.5, 1
        let (bold, light) = log_ticks(&(0.06f64.log10()..1.3f64.log10()));
        let labels: Vec<String> = bold.iter().map(log_label).collect();
        assert_eq!(labels, ["0.1", "0.2", "0.5", "1"]);
        assert!(light.len() > bold.len());
        // Narrow range without a 1-2-5 value: other integer mantissas, else evenly spaced.
        let (bold, _) = log_ticks(&(0.31f64.log10()..0.45f64.log10()));
        let labels: Vec<String> = bold.iter().map(log_label).collect();
        assert_eq!(labels, ["0.31", "0.34", "0.373", "0.41", "0.45"]);
        // Wide range: decades only, at most ~12.
        let (bold, _) = log_ticks(&(-30.0..30.0));
        assert!(bold.len() >= 2 && bold.len() <= 12, "{bold:?}");
        assert_eq!(log_ticks(&(1.0..f64::NAN)).0.len(), 0);
    }

    #[test]
    fn linear_ticks_format_cleanly() {
        let f = linear_ticks(&(0.0..1.0));
        assert_eq!(f(&0.30000000000000004), "0.3");
        assert_eq!(f(&1e-17), "0");
        let f = linear_ticks(&(1.0..50.0));
        assert_eq!(f(&10.0), "10");
        let f = linear_ticks(&(0.0..2e-6));
        assert_eq!(f(&1e-6), "1e-6");
    }
}
