//! Charts drawn on the server as SVG: no script, no assets, readable without colour (each line is
//! labelled), and always beside a table of the same numbers.

use std::fmt::Write;

/// A line chart of cumulative amounts per period against horizontal reference lines.
pub struct Burn<'a> {
    /// Period labels (`2026-03`) and the cumulative amount at the end of each, in fen.
    pub points: &'a [(String, i64)],
    /// Reference lines: label and amount in fen (the budget funded, the amount issued).
    pub references: &'a [(&'a str, i64)],
    /// What the chart shows, for screen readers.
    pub title: &'a str,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 16.0;
const RIGHT: f64 = 220.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 36.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

impl Burn<'_> {
    pub fn svg(&self) -> String {
        let top = self.points.iter().map(|(_, v)| *v).chain(self.references.iter().map(|(_, v)| *v)).max().unwrap_or(0);
        let top = top.max(1) as f64;
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let y = |v: i64| TOP + plot_h - (v.max(0) as f64 / top) * plot_h;
        let n = self.points.len();
        let x = |i: usize| if n <= 1 { LEFT + plot_w / 2.0 } else { LEFT + plot_w * i as f64 / (n - 1) as f64 };
        let mut svg = String::new();
        let title = escape(self.title);
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}" class="chart"><title>{title}</title>"#
        );
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{0}" x2="{1}" y2="{0}" stroke="#999" stroke-width="1"/>"##,
            TOP + plot_h,
            LEFT + plot_w
        );
        for (label, amount) in self.references {
            let at = y(*amount);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" y1="{at:.1}" x2="{0}" y2="{at:.1}" stroke="#b45309" stroke-dasharray="6 4"/><text x="{1}" y="{2:.1}" font-size="12" fill="#b45309">{3}</text>"##,
                LEFT + plot_w,
                LEFT + plot_w + 6.0,
                at + 4.0,
                escape(label)
            );
        }
        if !self.points.is_empty() {
            let path: Vec<String> =
                self.points.iter().enumerate().map(|(i, (_, v))| format!("{:.1},{:.1}", x(i), y(*v))).collect();
            let _ = write!(
                svg,
                r##"<polyline points="{}" fill="none" stroke="#1d4ed8" stroke-width="2.5"/>"##,
                path.join(" ")
            );
            for (i, (label, v)) in self.points.iter().enumerate() {
                let _ = write!(svg, r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="#1d4ed8"/>"##, x(i), y(*v));
                let _ = write!(
                    svg,
                    r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#333">{}</text>"##,
                    x(i),
                    HEIGHT - BOTTOM + 16.0,
                    escape(label)
                );
            }
        }
        svg.push_str("</svg>");
        svg
    }
}

/// Horizontal bars, one per labelled amount, each with its value written beside it: months of
/// spending, GPU-hours by hub and chip, the load of each site.
pub struct Bars<'a> {
    /// Label, amount (any unit, compared with each other), and the amount as shown.
    pub bars: &'a [(String, i64, String)],
    /// What the chart shows, for screen readers.
    pub title: &'a str,
}

const BAR_HEIGHT: f64 = 22.0;
const BAR_LABEL: f64 = 190.0;
const BAR_VALUE: f64 = 150.0;

impl Bars<'_> {
    pub fn svg(&self) -> String {
        let top = self.bars.iter().map(|(_, v, _)| *v).max().unwrap_or(0).max(1) as f64;
        let height = TOP + BAR_HEIGHT * self.bars.len() as f64 + 8.0;
        let plot_w = WIDTH - BAR_LABEL - BAR_VALUE;
        let title = escape(self.title);
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0}" role="img" aria-label="{title}" class="chart bars"><title>{title}</title>"#
        );
        for (i, (label, amount, shown)) in self.bars.iter().enumerate() {
            let y = TOP + BAR_HEIGHT * i as f64;
            let w = (amount.max(&0).to_owned() as f64 / top * plot_w).max(if *amount > 0 { 1.0 } else { 0.0 });
            let _ = write!(
                svg,
                r##"<text x="{0:.1}" y="{1:.1}" font-size="12" text-anchor="end" fill="#1f2328">{2}</text><rect x="{3:.1}" y="{4:.1}" width="{w:.1}" height="{5:.1}" fill="#1d4ed8"/><text x="{6:.1}" y="{1:.1}" font-size="12" fill="#1f2328">{7}</text>"##,
                BAR_LABEL - 8.0,
                y + BAR_HEIGHT * 0.65,
                escape(label),
                BAR_LABEL,
                y + 3.0,
                BAR_HEIGHT - 6.0,
                BAR_LABEL + w + 6.0,
                escape(shown)
            );
        }
        svg.push_str("</svg>");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_escapes_its_labels_and_draws_every_point() {
        let points = vec![("2026-03".to_owned(), 100), ("2026-04".to_owned(), 300)];
        let svg = Burn { points: &points, references: &[("<budget>", 1_000)], title: "a & b" }.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("&lt;budget&gt;") && svg.contains("a &amp; b"));
        assert!(!svg.contains("<budget>"));
    }

    #[test]
    fn an_empty_chart_is_still_a_chart() {
        let svg = Burn { points: &[], references: &[], title: "t" }.svg();
        assert!(svg.starts_with("<svg") && !svg.contains("NaN"));
    }
}
