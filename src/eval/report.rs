//! The evaluation report (JSON) and its figure (SVG).

use std::fmt::Write;

use serde::Serialize;

use super::{Group, KS, hit_metrics};

/// Recall@K / NDCG@K over a set of users.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GroupMetrics {
    pub users: usize,
    /// `recall[i]` is Recall@`KS[i]`.
    pub recall: [f64; KS.len()],
    pub ndcg: [f64; KS.len()],
}

impl GroupMetrics {
    pub(super) fn add(&mut self, rank: Option<usize>) {
        self.users += 1;
        for (i, &k) in KS.iter().enumerate() {
            let (r, n) = hit_metrics(rank, k);
            self.recall[i] += r;
            self.ndcg[i] += n;
        }
    }

    fn finish(&mut self) {
        let n = self.users.max(1) as f64;
        for v in self.recall.iter_mut().chain(self.ndcg.iter_mut()) {
            *v /= n;
        }
    }
}

/// Everything `sidx eval` reports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EvalReport {
    pub ks: [usize; KS.len()],
    pub beam: usize,
    /// Users whose history or target has no SID in the index.
    pub skipped_users: usize,
    pub constrained: GroupMetrics,
    /// Empty when unconstrained decoding was not run.
    pub unconstrained: GroupMetrics,
    /// Constrained metrics by the target's layer-2 token: head, tail, none.
    pub head: GroupMetrics,
    pub tail: GroupMetrics,
    pub no_layer2: GroupMetrics,
    /// Unconstrained: share of the top-k SIDs that no item has, per k.
    pub invalid_ratio: [f64; KS.len()],
    #[serde(skip)]
    pub(super) invalid_counts: [(usize, usize); KS.len()],
}

impl EvalReport {
    pub(super) fn new(beam: usize) -> Self {
        EvalReport {
            ks: KS,
            beam,
            ..Default::default()
        }
    }

    pub(super) fn group_mut(&mut self, g: Group) -> &mut GroupMetrics {
        match g {
            Group::Head => &mut self.head,
            Group::Tail => &mut self.tail,
            Group::NoLayer2 => &mut self.no_layer2,
        }
    }

    pub(super) fn finish(&mut self) {
        for g in [
            &mut self.constrained,
            &mut self.unconstrained,
            &mut self.head,
            &mut self.tail,
            &mut self.no_layer2,
        ] {
            g.finish();
        }
        for (r, &(bad, n)) in self.invalid_ratio.iter_mut().zip(&self.invalid_counts) {
            *r = if n == 0 { 0.0 } else { bad as f64 / n as f64 };
        }
    }

    /// A plain-text table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<22} {:>6} {}",
            "",
            "users",
            KS.map(|k| format!("R@{k:<3} N@{k:<3}")).join(" ")
        );
        let rows = [
            ("constrained", &self.constrained),
            ("unconstrained", &self.unconstrained),
            ("  head (layer 2)", &self.head),
            ("  tail (layer 2)", &self.tail),
            ("  no layer-2 token", &self.no_layer2),
        ];
        for (name, g) in rows {
            if g.users == 0 {
                continue;
            }
            let cells: Vec<String> = (0..KS.len())
                .map(|i| format!("{:.4} {:.4}", g.recall[i], g.ndcg[i]))
                .collect();
            let _ = writeln!(s, "{name:<22} {:>6} {}", g.users, cells.join(" "));
        }
        if self.unconstrained.users > 0 {
            let cells: Vec<String> = KS
                .iter()
                .zip(self.invalid_ratio)
                .map(|(k, r)| format!("@{k}: {:.1}%", 100.0 * r))
                .collect();
            let _ = writeln!(s, "invalid SIDs, unconstrained: {}", cells.join("  "));
        }
        s
    }
}

/// Recall@K of constrained / unconstrained decoding and the invalid ratio
/// against k, as a small SVG.
pub fn render_svg(r: &EvalReport) -> String {
    let (w, h, pad) = (640.0, 260.0, 40.0);
    let panel = (w - 3.0 * pad) / 2.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n"
    );
    let x_at = |x0: f64, i: usize| x0 + panel * (i as f64 + 0.5) / KS.len() as f64;
    let y_at = |v: f64| h - pad - v.clamp(0.0, 1.0) * (h - 2.0 * pad);
    let mut line = |x0: f64, values: &[f64], color: &str, label: &str, row: usize| {
        let pts: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x_at(x0, i), y_at(*v)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.join(" ")
        );
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">{label}</text>",
            x0 + 6.0,
            pad + 12.0 * row as f64
        );
    };
    let ymax_recall = r
        .constrained
        .recall
        .iter()
        .chain(&r.unconstrained.recall)
        .cloned()
        .fold(0.0, f64::max)
        .max(1e-9);
    let scaled = |v: &[f64; KS.len()]| v.map(|x| x / ymax_recall);
    line(
        pad,
        &scaled(&r.constrained.recall),
        "#1f77b4",
        "Recall@K constrained",
        0,
    );
    if r.unconstrained.users > 0 {
        line(
            pad,
            &scaled(&r.unconstrained.recall),
            "#ff7f0e",
            "Recall@K unconstrained",
            1,
        );
        line(
            2.0 * pad + panel,
            &r.invalid_ratio,
            "#d62728",
            "invalid SIDs in top-k (unconstrained)",
            0,
        );
    }
    for (x0, title, top) in [
        (pad, "Recall@K", format!("{ymax_recall:.3}")),
        (2.0 * pad + panel, "invalid ratio", "1.0".to_string()),
    ] {
        let _ = writeln!(
            s,
            "<rect x=\"{x0}\" y=\"{pad}\" width=\"{panel}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>",
            h - 2.0 * pad
        );
        let _ = writeln!(
            s,
            "<text x=\"{x0}\" y=\"{}\">{title} (top = {top})</text>",
            pad - 8.0
        );
        for (i, k) in KS.iter().enumerate() {
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{k}</text>",
                x_at(x0, i),
                h - pad + 14.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
