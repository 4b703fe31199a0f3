//! Several SID sets side by side — methods, seeds, mitigations: per-layer
//! normalized entropy, Gini and top-1 share, path sparsity, collisions and
//! the reconstruction error where known, as one table and one SVG.

use std::fmt::Write as _;

use serde::Serialize;

use super::report::HourglassReport;

/// One SID set of a comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Compared {
    /// What to call it (its file, usually).
    pub name: String,
    /// The quantization method its header records.
    pub method: Option<String>,
    /// Mean squared reconstruction error of its quantizer, when known.
    pub mse: Option<f64>,
    pub report: HourglassReport,
}

/// The comparison as a text table: one row per set and layer.
pub fn table(sets: &[Compared]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<28} {:<12} {:>5} {:>6} {:>6} {:>7} {:>9} {:>9} {:>9}",
        "SIDs", "method", "layer", "H/max", "gini", "top1", "sparsity", "colliding", "MSE"
    );
    for set in sets {
        let r = &set.report;
        for (i, l) in r.layers.iter().enumerate() {
            let first = i == 0;
            let sparsity = r.paths.path_sparsity.get(i).copied().unwrap_or(f64::NAN);
            let _ = writeln!(
                s,
                "{:<28} {:<12} {:>5} {:>6.3} {:>6.3} {:>7.4} {:>9.2e} {:>9} {:>9}",
                if first {
                    short(&set.name, 28)
                } else {
                    String::new()
                },
                if first {
                    set.method.clone().unwrap_or_else(|| "-".into())
                } else {
                    String::new()
                },
                l.layer,
                l.normalized_entropy,
                l.gini,
                l.top1_share,
                sparsity,
                if first {
                    r.collisions.colliding_items.to_string()
                } else {
                    String::new()
                },
                match (first, set.mse) {
                    (true, Some(m)) => format!("{m:.5}"),
                    (true, None) => "-".into(),
                    _ => String::new(),
                },
            );
        }
    }
    s
}

/// The spread of several runs of one configuration (seeds): per layer the
/// mean and ± half the range of normalized entropy, Gini and top-1 share,
/// then colliding items and MSE the same way.
pub fn spread(sets: &[Compared]) -> String {
    let mut s = String::new();
    let stat = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (
            v.iter().sum::<f64>() / v.len().max(1) as f64,
            (hi - lo) / 2.0,
        )
    };
    let layers = sets
        .iter()
        .map(|c| c.report.layers.len())
        .min()
        .unwrap_or(0);
    let _ = writeln!(s, "over {} runs (mean ± half range):", sets.len());
    let _ = writeln!(
        s,
        "{:>5}  {:<15}  {:<15}  {:<15}",
        "layer", "H/max", "gini", "top1"
    );
    type Metric = fn(&super::LayerStats) -> f64;
    let metrics: [Metric; 3] = [|l| l.normalized_entropy, |l| l.gini, |l| l.top1_share];
    for layer in 0..layers {
        let _ = write!(s, "{:>5}", layer + 1);
        for metric in metrics {
            let v: Vec<f64> = sets
                .iter()
                .map(|c| metric(&c.report.layers[layer]))
                .collect();
            let (m, h) = stat(&v);
            let _ = write!(s, "  {m:.4} ± {h:.4}");
        }
        s.push('\n');
    }
    let colliding: Vec<f64> = sets
        .iter()
        .map(|c| c.report.collisions.colliding_items as f64)
        .collect();
    let (m, h) = stat(&colliding);
    let _ = write!(s, "colliding items {m:.1} ± {h:.1}");
    let mse: Vec<f64> = sets.iter().filter_map(|c| c.mse).collect();
    if mse.len() == sets.len() {
        let (m, h) = stat(&mse);
        let _ = write!(s, "; MSE {m:.5} ± {h:.5}");
    }
    s.push('\n');
    s
}

fn short(name: &str, width: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= width {
        return name.to_string();
    }
    let tail: String = chars[chars.len() - (width - 1)..].iter().collect();
    format!("…{tail}")
}

const W: f64 = 380.0;
const H: f64 = 260.0;
const PAD: f64 = 46.0;
const COLORS: [&str; 8] = [
    "#3b6fb6", "#d1495b", "#2e933c", "#8f5fb8", "#e08a1e", "#1b998b", "#6b4226", "#444444",
];

/// The comparison as an SVG: normalized entropy, Gini and top-1 share
/// against the layer, one line per set, and a legend with collisions and MSE.
pub fn render(sets: &[Compared]) -> String {
    type Metric = fn(&super::LayerStats) -> f64;
    let panels: [(&str, Metric); 3] = [
        ("normalized entropy (1 = uniform)", |l| l.normalized_entropy),
        ("Gini (0 = equal use)", |l| l.gini),
        ("top-1 code share", |l| l.top1_share),
    ];
    let layers = sets
        .iter()
        .map(|s| s.report.layers.len())
        .max()
        .unwrap_or(1);
    let legend_h = 24.0 + 18.0 * sets.len() as f64;
    let width = 3.0 * W + 20.0;
    let height = H + 50.0 + legend_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="20" y="28" font-size="18" font-weight="bold">SID sets compared, per quantizer layer</text>"#
    );
    for (p, (title, metric)) in panels.iter().enumerate() {
        let ox = 10.0 + p as f64 * W;
        let oy = 44.0;
        let max = match p {
            2 => sets
                .iter()
                .flat_map(|s| s.report.layers.iter().map(metric))
                .fold(0.0f64, f64::max)
                .max(1e-9),
            _ => 1.0,
        };
        let x = |l: usize| ox + PAD + (W - 2.0 * PAD) * (l as f64 / (layers.max(2) - 1) as f64);
        let y = |v: f64| oy + H - PAD - (H - 2.0 * PAD) * (v / max).clamp(0.0, 1.0);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="13" text-anchor="middle">{title}</text>"#,
            ox + W / 2.0,
            oy + 14.0
        );
        let _ = writeln!(
            s,
            r##"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#999"/><line x1="{0}" y1="{2}" x2="{3}" y2="{2}" stroke="#999"/>"##,
            ox + PAD,
            y(max),
            y(0.0),
            ox + W - PAD
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" font-size="11" text-anchor="end" fill="#555">{max:.2}</text><text x="{}" y="{}" font-size="11" text-anchor="end" fill="#555">0</text>"##,
            ox + PAD - 4.0,
            y(max) + 4.0,
            ox + PAD - 4.0,
            y(0.0) + 4.0
        );
        for l in 0..layers {
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" font-size="11" text-anchor="middle" fill="#555">layer {}</text>"##,
                x(l),
                y(0.0) + 16.0,
                l + 1
            );
        }
        for (i, set) in sets.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points: Vec<String> = set
                .report
                .layers
                .iter()
                .enumerate()
                .map(|(l, st)| format!("{:.1},{:.1}", x(l), y(metric(st))))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                points.join(" ")
            );
            for pt in &points {
                let (px, py) = pt.split_once(',').expect("x,y");
                let _ = writeln!(s, r#"<circle cx="{px}" cy="{py}" r="3" fill="{color}"/>"#);
            }
        }
    }
    let ly = 44.0 + H + 10.0;
    for (i, set) in sets.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let y = ly + 18.0 * i as f64;
        let mse = set.mse.map_or(String::new(), |m| format!(", MSE {m:.5}"));
        let method = set
            .method
            .as_deref()
            .map_or(String::new(), |m| format!(" [{m}]"));
        let _ = writeln!(
            s,
            r#"<rect x="20" y="{}" width="14" height="4" fill="{color}"/><text x="42" y="{}" font-size="12">{}{} — {} items, {} colliding{}</text>"#,
            y - 4.0,
            y,
            escape(&set.name),
            escape(&method),
            set.report.items,
            set.report.collisions.colliding_items,
            mse
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
