//! The comparison as a picture: the backlog (ready messages) over time in the top
//! panel and the replicas in the bottom one, one coloured step line per policy,
//! with axes, ticks, a legend and a title naming the trace. A recorded real run
//! (`--real`) is drawn as a wide pale band of the colour of the simulated line it
//! is compared with, beneath it. Hand-written SVG; every text is escaped, so the
//! document stays well-formed whatever the labels.

use std::fmt::Write;

use super::report::{Outcome, Point};

const WIDTH: f64 = 960.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 70.0;
const PANEL: f64 = 240.0;
const GAP: f64 = 70.0;
const HEIGHT: f64 = TOP + 2.0 * PANEL + GAP + 60.0;
/// Which number of a point a panel plots.
type Measure = fn(&Point) -> usize;

const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// One line of the chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line<'a> {
    pub label: &'a str,
    pub series: &'a [Point],
    /// Index into the palette (cycled).
    pub colour: usize,
    /// A recorded run: a wide pale band, drawn beneath the simulated lines.
    pub recorded: bool,
}

/// The simulated line of each outcome, coloured in order.
pub fn lines_of(outcomes: &[Outcome]) -> Vec<Line<'_>> {
    outcomes
        .iter()
        .enumerate()
        .map(|(colour, o)| Line {
            label: &o.summary.label,
            series: &o.series,
            colour,
            recorded: false,
        })
        .collect()
}

/// An SVG document of `outcomes` under `title` and a line of `subtitle`.
pub fn render(title: &str, subtitle: &str, outcomes: &[Outcome]) -> String {
    render_lines(title, subtitle, &lines_of(outcomes))
}

/// An SVG document of `lines` (recorded ones beneath the others), in legend order.
pub fn render_lines(title: &str, subtitle: &str, lines: &[Line<'_>]) -> String {
    let end = lines
        .iter()
        .flat_map(|l| l.series.last())
        .map(|p| p.t)
        .fold(1.0, f64::max);
    let (unit, unit_name) = if end > 900.0 {
        (60.0, "min")
    } else {
        (1.0, "s")
    };
    let x_axis = Axis::new(end / unit);
    let plot_width = WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + plot_width * (t / unit) / x_axis.top;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="28" font-size="17" text-anchor="middle">{}</text>
<text x="{}" y="48" fill="#555" text-anchor="middle">{}</text>
"##,
        LEFT + plot_width / 2.0,
        escape(title),
        LEFT + plot_width / 2.0,
        escape(subtitle),
    );
    let panels: [(&str, Measure); 2] = [
        ("backlog (ready messages)", |p| p.ready),
        ("replicas", |p| p.replicas),
    ];
    for (index, (name, value)) in panels.into_iter().enumerate() {
        let top = TOP + index as f64 * (PANEL + GAP);
        let highest = lines
            .iter()
            .flat_map(|l| l.series.iter().map(value))
            .max()
            .unwrap_or(0);
        let y_axis = Axis::new(highest as f64);
        let y = |v: usize| top + PANEL - PANEL * v as f64 / y_axis.top;
        frame(&mut svg, top, name, &x_axis, &y_axis, unit_name);
        let beneath = lines.iter().filter(|l| l.recorded);
        for line in beneath.chain(lines.iter().filter(|l| !l.recorded)) {
            let _ = writeln!(
                svg,
                r#"<path d="{}" fill="none" stroke="{}" {}/>"#,
                step_path(line.series, &x, &y, value),
                colour(line),
                stroke(line, 1.6),
            );
        }
    }
    legend(&mut svg, lines);
    svg.push_str("</svg>\n");
    svg
}

/// Ticks of an axis from 0: a 1-2-5 step giving about five intervals.
struct Axis {
    step: f64,
    top: f64,
}

impl Axis {
    fn new(highest: f64) -> Self {
        let highest = if highest > 0.0 { highest } else { 1.0 };
        let rough = highest / 5.0;
        let magnitude = 10f64.powf(rough.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * magnitude)
            .find(|s| *s >= rough)
            .unwrap_or(10.0 * magnitude);
        Self {
            step,
            top: (highest / step).ceil() * step,
        }
    }

    fn ticks(&self) -> impl Iterator<Item = f64> + '_ {
        let count = (self.top / self.step).round() as u32;
        (0..=count).map(|k| f64::from(k) * self.step)
    }
}

fn frame(svg: &mut String, top: f64, name: &str, x_axis: &Axis, y_axis: &Axis, unit: &str) {
    let plot_width = WIDTH - LEFT - RIGHT;
    let bottom = top + PANEL;
    for tick in y_axis.ticks() {
        let y = bottom - PANEL * tick / y_axis.top;
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_width,
            LEFT - 6.0,
            y + 4.0,
            number(tick)
        );
    }
    for tick in x_axis.ticks() {
        let x = LEFT + plot_width * tick / x_axis.top;
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{bottom}" x2="{x:.1}" y2="{:.1}" stroke="#444"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            bottom + 5.0,
            bottom + 18.0,
            number(tick)
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_width}" height="{PANEL}" fill="none" stroke="#444"/>
<text x="{LEFT}" y="{:.1}" font-weight="bold">{}</text>
<text x="{:.1}" y="{:.1}" text-anchor="middle">time ({unit})</text>"##,
        top - 8.0,
        escape(name),
        LEFT + plot_width / 2.0,
        bottom + 34.0,
    );
}

/// A step line: each value holds until the next sample that differs.
fn step_path(
    series: &[Point],
    x: &impl Fn(f64) -> f64,
    y: &impl Fn(usize) -> f64,
    value: Measure,
) -> String {
    let mut d = String::new();
    let mut last: Option<usize> = None;
    for point in series {
        let v = value(point);
        match last {
            None => {
                let _ = write!(d, "M{:.1},{:.1}", x(point.t), y(v));
            }
            Some(previous) if previous != v => {
                let _ = write!(d, "H{:.1}V{:.1}", x(point.t), y(v));
            }
            Some(_) => continue,
        }
        last = Some(v);
    }
    if let Some(point) = series.last() {
        let _ = write!(d, "H{:.1}", x(point.t));
    }
    d
}

fn colour(line: &Line<'_>) -> &'static str {
    COLOURS[line.colour % COLOURS.len()]
}

/// The stroke attributes of a line: `width` wide, or a wide pale band when recorded.
fn stroke(line: &Line<'_>, width: f64) -> String {
    if line.recorded {
        r#"stroke-width="7" stroke-opacity="0.3" stroke-linejoin="round""#.to_owned()
    } else {
        format!(r#"stroke-width="{width}""#)
    }
}

fn legend(svg: &mut String, lines: &[Line<'_>]) {
    let x = WIDTH - RIGHT + 20.0;
    for (index, line) in lines.iter().enumerate() {
        let y = TOP + 10.0 + 22.0 * index as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" {}/><text x="{}" y="{}">{}</text>"#,
            x + 24.0,
            colour(line),
            stroke(line, 3.0),
            x + 30.0,
            y + 4.0,
            escape(line.label)
        );
    }
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
#[path = "svg_tests.rs"]
mod tests;
