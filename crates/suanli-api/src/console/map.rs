//! A map of China drawn as SVG on the server: a coarse outline of the mainland, Hainan and Taiwan
//! (a few dozen points, enough to place a site), the national computing clusters of the
//! Eastern-Data-Western-Computing plan from `data/network.csv`, and the sites a quote names.
//!
//! The projection is equirectangular with latitude stretched by 1/cos 35° (the country's middle),
//! so shapes look as they do on a wall map; positions are good to a few kilometres per pixel,
//! which is all a reader needs to see where work would run.

use std::fmt::Write;

/// Longitude, latitude of the outline, clockwise from Mohe. A coarse tracing for orientation,
/// not a survey boundary.
const MAINLAND: &[(f64, f64)] = &[
    (122.5, 53.5),
    (126.0, 52.8),
    (127.5, 49.8),
    (130.5, 48.9),
    (135.0, 48.4),
    (133.0, 45.0),
    (131.0, 42.9),
    (130.5, 42.4),
    (128.0, 42.0),
    (125.0, 40.0),
    (121.6, 38.8),
    (121.0, 40.8),
    (118.0, 39.2),
    (117.7, 38.5),
    (119.0, 37.2),
    (122.5, 37.4),
    (120.0, 36.0),
    (119.2, 35.0),
    (120.5, 33.0),
    (121.9, 31.7),
    (121.9, 30.8),
    (122.0, 29.9),
    (121.5, 28.5),
    (120.5, 27.2),
    (119.6, 26.0),
    (118.5, 24.6),
    (117.0, 23.5),
    (114.3, 22.5),
    (113.5, 22.2),
    (111.0, 21.5),
    (110.2, 20.3),
    (109.7, 21.5),
    (108.0, 21.6),
    (106.7, 22.9),
    (105.5, 23.2),
    (103.9, 22.5),
    (102.2, 22.4),
    (101.2, 21.2),
    (99.2, 22.1),
    (98.8, 24.1),
    (97.6, 24.8),
    (98.6, 27.6),
    (97.5, 28.3),
    (95.4, 29.0),
    (92.5, 27.8),
    (89.5, 28.1),
    (88.0, 27.9),
    (85.9, 28.2),
    (82.0, 30.2),
    (79.5, 31.3),
    (78.7, 32.6),
    (79.4, 34.4),
    (77.8, 35.5),
    (75.9, 36.7),
    (74.5, 37.3),
    (73.6, 39.5),
    (75.6, 40.5),
    (78.4, 41.4),
    (80.3, 42.1),
    (80.5, 44.5),
    (82.5, 45.3),
    (83.0, 47.2),
    (85.7, 47.1),
    (87.3, 49.1),
    (88.0, 48.3),
    (90.5, 46.0),
    (91.0, 45.1),
    (95.4, 44.3),
    (96.4, 42.7),
    (100.8, 42.6),
    (105.0, 41.6),
    (107.5, 42.4),
    (110.4, 42.7),
    (111.9, 43.7),
    (114.5, 44.9),
    (117.3, 46.5),
    (119.8, 47.0),
    (118.5, 47.9),
    (115.5, 47.9),
    (116.7, 49.8),
    (117.9, 49.5),
    (119.8, 50.2),
    (120.8, 52.6),
];

const HAINAN: &[(f64, f64)] =
    &[(108.6, 19.1), (109.3, 18.2), (110.1, 18.3), (111.0, 19.6), (110.6, 20.1), (109.6, 20.0)];

const TAIWAN: &[(f64, f64)] =
    &[(120.1, 23.0), (120.7, 22.0), (121.0, 22.3), (121.9, 24.5), (121.6, 25.3), (121.0, 25.1)];

const WEST: f64 = 72.0;
const NORTH: f64 = 54.5;
const SCALE: f64 = 9.0;
const STRETCH: f64 = 1.22;
const WIDTH: f64 = (136.0 - WEST) * SCALE;
const HEIGHT: f64 = (NORTH - 17.5) * SCALE * STRETCH;

/// Where a longitude and latitude fall on the drawing.
pub fn project(lon: f64, lat: f64) -> (f64, f64) {
    ((lon - WEST) * SCALE, (NORTH - lat) * SCALE * STRETCH)
}

/// A point to mark: what it is decides how it is drawn.
pub struct Mark {
    pub lon: f64,
    pub lat: f64,
    pub label: String,
    pub kind: MarkKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    /// A cluster of the national network.
    Cluster,
    /// Where the work would run.
    Chosen,
    /// Another pool the quote considered.
    Alternative,
}

/// The map with its marks, titled for screen readers.
pub fn svg(title: &str, marks: &[Mark]) -> String {
    let mut out = String::with_capacity(8_192);
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="map" viewBox="0 0 {WIDTH:.0} {HEIGHT:.0}" role="img" aria-label="{}">"#,
        escape(title)
    );
    for shape in [MAINLAND, HAINAN, TAIWAN] {
        out.push_str(r#"<polygon class="land" points=""#);
        for &(lon, lat) in shape {
            let (x, y) = project(lon, lat);
            let _ = write!(out, "{x:.1},{y:.1} ");
        }
        out.push_str(r#""/>"#);
    }
    // Clusters first, so the quote's marks are drawn over them.
    let mut ordered: Vec<&Mark> = marks.iter().collect();
    ordered.sort_by_key(|m| match m.kind {
        MarkKind::Cluster => 0,
        MarkKind::Alternative => 1,
        MarkKind::Chosen => 2,
    });
    for mark in ordered {
        let (x, y) = project(mark.lon, mark.lat);
        let (class, radius) = match mark.kind {
            MarkKind::Cluster => ("cluster", 4.0),
            MarkKind::Alternative => ("alternative", 7.0),
            MarkKind::Chosen => ("chosen", 9.0),
        };
        let _ = write!(
            out,
            r#"<g class="{class}"><circle cx="{x:.1}" cy="{y:.1}" r="{radius}"><title>{label}</title></circle>"#,
            label = escape(&mark.label)
        );
        if mark.kind != MarkKind::Cluster {
            let _ =
                write!(out, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, x + radius + 3.0, y + 4.0, escape(&mark.label));
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The clusters of the national network as marks, named in the reader's language.
pub fn clusters(chinese: bool) -> Vec<Mark> {
    suanli_placement::network::clusters()
        .into_iter()
        .map(|c| Mark {
            lon: c.lon,
            lat: c.lat,
            label: if chinese { c.name.clone() } else { format!("{} ({})", c.hub, c.province) },
            kind: MarkKind::Cluster,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_falls_inside_the_drawing_and_marks_are_escaped() {
        for c in suanli_placement::network::clusters() {
            let (x, y) = project(c.lon, c.lat);
            assert!((0.0..WIDTH).contains(&x) && (0.0..HEIGHT).contains(&y), "{} at {x},{y}", c.id);
        }
        let drawn = svg("a <map>", &[Mark { lon: 121.5, lat: 31.2, label: "<b>&".into(), kind: MarkKind::Chosen }]);
        assert!(drawn.contains("&lt;b&gt;&amp;") && !drawn.contains("<b>"));
        assert!(drawn.contains(r#"aria-label="a &lt;map&gt;""#));
    }
}
