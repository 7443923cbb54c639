//! The picture of which collections reference which: an SVG with the collections on an
//! ellipse and an arrow from each collection to every collection its items point at.

use std::fmt::Write as _;

use super::html::{Url, escape};

/// A collection in the picture.
#[derive(Debug)]
pub(crate) struct Node {
    /// Its RN (`[rn][from::cardb]:cars:suv:*`), the link of the node.
    pub(crate) rn: String,
    /// What the node says (`cardb cars:suv`).
    pub(crate) label: String,
}

/// A reference from one collection to another: node indexes and how many sampled values.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Edge {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) count: usize,
}

const WIDTH: f64 = 760.0;
const BOX_W: f64 = 170.0;
const BOX_H: f64 = 30.0;

/// The SVG (`svg#refs`, one `g.node` a collection, one `line.edge` a reference).
pub(crate) fn svg(nodes: &[Node], edges: &[Edge]) -> String {
    let n = nodes.len().max(1) as f64;
    // An ellipse wider than tall (pages are wide); the first node on the left, so two
    // collections sit side by side and a few fit above the fold.
    let rx = if nodes.len() <= 1 {
        0.0
    } else {
        (90.0 * n / std::f64::consts::PI).clamp(220.0, 560.0)
    };
    let ry = if nodes.len() <= 2 { 0.0 } else { rx * 0.55 };
    let height = 2.0 * ry + BOX_H + 60.0;
    let width = WIDTH.max(2.0 * rx + BOX_W + 40.0);
    let (cx, cy) = (width / 2.0, height / 2.0);
    let at = |i: usize| {
        let angle = std::f64::consts::PI + std::f64::consts::TAU * i as f64 / n;
        (cx + rx * angle.cos(), cy + ry * angle.sin())
    };
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg id="refs" xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img" aria-label="references between collections">"#
    );
    out.push_str(
        r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#8a94a8"/></marker></defs>"##,
    );
    for edge in edges {
        let (x1, y1) = at(edge.from);
        let (x2, y2) = at(edge.to);
        // Stop at the target box's edge so the arrow head shows.
        let (dx, dy) = (x2 - x1, y2 - y1);
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        let scale = ((BOX_W / 2.0) / dx.abs().max(1e-9))
            .min((BOX_H / 2.0) / dy.abs().max(1e-9))
            .min(1.0);
        let back = scale * len;
        let (ex, ey) = (x2 - dx / len * back, y2 - dy / len * back);
        let _ = write!(
            out,
            r#"<line class="edge" data-from="{}" data-to="{}" x1="{x1:.1}" y1="{y1:.1}" x2="{ex:.1}" y2="{ey:.1}" marker-end="url(#arrow)"><title>{} → {} ({} sampled)</title></line>"#,
            escape(&nodes[edge.from].rn),
            escape(&nodes[edge.to].rn),
            escape(&nodes[edge.from].label),
            escape(&nodes[edge.to].label),
            edge.count
        );
    }
    for (i, node) in nodes.iter().enumerate() {
        let (x, y) = at(i);
        let url = Url::new("/collection").with("rn", &node.rn);
        let label: String = node.label.chars().take(26).collect();
        let _ = write!(
            out,
            r#"<g class="node" data-collection="{}"><a href="{}"><rect x="{:.1}" y="{:.1}" width="{BOX_W}" height="{BOX_H}" rx="5"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text><title>{}</title></a></g>"#,
            escape(&node.rn),
            url.href(),
            x - BOX_W / 2.0,
            y - BOX_H / 2.0,
            y + 4.0,
            escape(&label),
            escape(&node.rn)
        );
    }
    out.push_str("</svg>");
    out
}
