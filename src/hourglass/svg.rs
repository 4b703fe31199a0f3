//! The hourglass as a picture (as in the paper's Figures 1–2): on the left,
//! each layer as a bar as wide as its effective number of codes (2^entropy),
//! which draws the hourglass; on the right, each layer's codes ranked by
//! frequency (each layer scaled to its own peak), with the item flows between layers.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::report::HourglassReport;
use crate::sid::SidTable;

const WIDTH: f64 = 1200.0;
const ROW: f64 = 120.0;
const GAP: f64 = 90.0;
const TOP: f64 = 70.0;
const LEFT_W: f64 = 300.0;
const PLOT_X: f64 = 360.0;
const PLOT_W: f64 = WIDTH - PLOT_X - 30.0;
/// Flows drawn between two layers, the largest first.
const MAX_FLOWS: usize = 600;
const COLORS: [&str; 6] = [
    "#3b6fb6", "#d1495b", "#2e933c", "#8f5fb8", "#e08a1e", "#1b998b",
];

/// Renders the report of `table` as a standalone SVG document.
pub fn render(table: &SidTable, report: &HourglassReport) -> String {
    let counts = table.layer_counts();
    let layers = counts.len();
    let height = TOP + layers as f64 * ROW + (layers.saturating_sub(1)) as f64 * GAP + 50.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" paint-order="stroke">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let title = match &report.mitigation {
        Some(m) => format!(
            "SID hourglass — {} items, {} ({} layer-2 codes dropped)",
            report.items, m.strategy, m.dropped_layer2_codes
        ),
        None => format!(
            "SID hourglass — {} items, codebooks {:?}",
            report.items, report.codebook_sizes
        ),
    };
    let _ = writeln!(
        s,
        r#"<text x="20" y="32" font-size="22" font-weight="bold">{}</text>"#,
        escape(&title)
    );
    let _ = writeln!(
        s,
        r##"<text x="20" y="54" font-size="13" fill="#555">left: effective codes per layer (2^entropy); right: items per code, codes ranked, each layer scaled to its peak; ribbons: items flowing between layers</text>"##
    );

    // Rank of each code within its layer (most frequent first) gives its x position.
    let ranks: Vec<Vec<usize>> = counts.iter().map(|c| rank_codes(c)).collect();
    let row_y = |l: usize| TOP + l as f64 * (ROW + GAP);
    let code_x = |l: usize, code: usize| {
        let m = counts[l].len().max(1) as f64;
        PLOT_X + (ranks[l][code] as f64 + 0.5) * PLOT_W / m
    };

    // Silhouette joining the hourglass bars.
    for l in 0..layers.saturating_sub(1) {
        let w = |i: usize| {
            (LEFT_W - 40.0) * report.layers[i].entropy.exp2()
                / report.layers[i].codebook_size.max(1) as f64
        };
        let cx = 20.0 + (LEFT_W - 40.0) / 2.0;
        let (y_a, y_b) = (row_y(l) + ROW * 0.7, row_y(l + 1) + ROW * 0.3);
        let (wa, wb) = (w(l) / 2.0, w(l + 1) / 2.0);
        let _ = writeln!(
            s,
            r##"<path d="M{:.1},{y_a:.1}L{:.1},{y_a:.1}L{:.1},{y_b:.1}L{:.1},{y_b:.1}z" fill="#bbb" opacity="0.5"/>"##,
            cx - wa,
            cx + wa,
            cx + wb,
            cx - wb
        );
    }
    draw_flows(&mut s, table, &counts, &row_y, &code_x);
    for (l, c) in counts.iter().enumerate() {
        let stats = &report.layers[l];
        let color = COLORS[l % COLORS.len()];
        let y0 = row_y(l);
        let base = y0 + ROW;
        // Hourglass bar.
        let eff = stats.entropy.exp2();
        let w = (LEFT_W - 40.0) * eff / stats.codebook_size.max(1) as f64;
        let cx = 20.0 + (LEFT_W - 40.0) / 2.0;
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}" opacity="0.85"/>"#,
            cx - w / 2.0,
            y0 + ROW * 0.3,
            w.max(1.0),
            ROW * 0.4
        );
        let _ = writeln!(
            s,
            r#"<text x="{cx:.1}" y="{:.1}" font-size="13" text-anchor="middle" stroke="white" stroke-width="4">layer {} · {:.0} of {} effective codes</text>"#,
            y0 + ROW * 0.3 - 8.0,
            stats.layer,
            eff,
            stats.codebook_size
        );
        // Ranked code histogram.
        let m = c.len().max(1) as f64;
        let bar_w = PLOT_W / m;
        let mut sorted: Vec<u64> = c.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let peak = sorted.first().copied().unwrap_or(1).max(1) as f64;
        let mut path = String::new();
        for (r, &n) in sorted.iter().enumerate().filter(|&(_, &n)| n > 0) {
            let h = (ROW - 6.0) * n as f64 / peak;
            let _ = write!(
                path,
                "M{:.2},{:.2}h{:.2}v{:.2}h{:.2}z",
                PLOT_X + r as f64 * bar_w,
                base,
                bar_w.max(0.6),
                -h.max(0.5),
                -bar_w.max(0.6)
            );
        }
        let _ = writeln!(s, r#"<path d="{path}" fill="{color}"/>"#);
        let _ = writeln!(
            s,
            r##"<line x1="{PLOT_X}" y1="{base:.1}" x2="{:.1}" y2="{base:.1}" stroke="#999"/>"##,
            PLOT_X + PLOT_W
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="end" fill="#222">layer {}: {} items · used {}/{} · H/max {:.3} · Gini {:.3} · top-1 {:.1}%</text>"##,
            PLOT_X + PLOT_W,
            base + 16.0,
            stats.layer,
            stats.items,
            stats.used,
            stats.codebook_size,
            stats.normalized_entropy,
            stats.gini,
            100.0 * stats.top1_share
        );
    }
    s.push_str("</svg>\n");
    s
}

/// `rank[code]`: position of each code when sorted by count, descending.
fn rank_codes(counts: &[u64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    let mut rank = vec![0; counts.len()];
    for (r, &c) in order.iter().enumerate() {
        rank[c] = r;
    }
    rank
}

/// Ribbons from each code of layer l to each code of layer l + 1 its items go to.
fn draw_flows(
    s: &mut String,
    table: &SidTable,
    counts: &[Vec<u64>],
    row_y: &dyn Fn(usize) -> f64,
    code_x: &dyn Fn(usize, usize) -> f64,
) {
    let layers = counts.len();
    let mut flows: Vec<HashMap<(u32, u32), u64>> = vec![HashMap::new(); layers.saturating_sub(1)];
    for (_, sid) in table.iter() {
        for pair in sid.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if b.layer == a.layer + 1 && (b.layer as usize) <= layers {
                *flows[a.layer as usize - 1]
                    .entry((a.code, b.code))
                    .or_default() += 1;
            }
        }
    }
    for (l, f) in flows.iter().enumerate() {
        let mut top: Vec<(&(u32, u32), &u64)> = f.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        top.truncate(MAX_FLOWS);
        let max = top.first().map(|t| *t.1).unwrap_or(1) as f64;
        let (y_a, y_b) = (row_y(l) + ROW + 24.0, row_y(l + 1));
        let mid = (y_a + y_b) / 2.0;
        let color = COLORS[l % COLORS.len()];
        for (&(a, b), &n) in top {
            let (xa, xb) = (code_x(l, a as usize), code_x(l + 1, b as usize));
            let _ = writeln!(
                s,
                r#"<path d="M{xa:.1},{y_a:.1}C{xa:.1},{mid:.1} {xb:.1},{mid:.1} {xb:.1},{y_b:.1}" fill="none" stroke="{color}" stroke-opacity="0.25" stroke-width="{:.2}"/>"#,
                0.4 + 7.0 * n as f64 / max
            );
        }
    }
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
