//! Minimal inline-SVG charts for report.html: a plot frame with linear or log axes, ticks and
//! labels, and the marks the report needs (points, lines, rectangles, text). No dependencies,
//! no scripts: the output is plain SVG markup embedded in the page.

use std::fmt::Write;

/// An axis scale.
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    /// Data range.
    pub lo: f64,
    /// Data range.
    pub hi: f64,
    /// Log10 scale (lo, hi > 0).
    pub log: bool,
}

impl Axis {
    /// A linear axis over [lo, hi] padded by 4 % (a degenerate range is widened).
    pub fn linear(lo: f64, hi: f64) -> Axis {
        let (lo, hi) = if lo.is_finite() && hi.is_finite() {
            (lo, hi)
        } else {
            (0.0, 1.0)
        };
        let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 0.5, hi + 0.5) };
        let pad = 0.04 * (hi - lo);
        Axis {
            lo: lo - pad,
            hi: hi + pad,
            log: false,
        }
    }
    /// A log10 axis over [lo, hi] (both positive).
    pub fn log10(lo: f64, hi: f64) -> Axis {
        let lo = if lo > 0.0 && lo.is_finite() { lo } else { 1e-12 };
        let hi = if hi > lo && hi.is_finite() { hi } else { lo * 10.0 };
        Axis {
            lo: lo / 1.2,
            hi: hi * 1.2,
            log: true,
        }
    }
    fn t(&self, v: f64) -> f64 {
        if self.log {
            let v = v.max(self.lo);
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }
    /// About `n` round tick values.
    pub fn ticks(&self, n: usize) -> Vec<f64> {
        if self.log {
            let (a, b) = (self.lo.log10().ceil() as i32, self.hi.log10().floor() as i32);
            let step = (((b - a) as f64) / n as f64).ceil().max(1.0) as i32;
            return (a..=b).step_by(step as usize).map(|e| 10f64.powi(e)).collect();
        }
        let span = self.hi - self.lo;
        let raw = span / n as f64;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0, 20.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| span / s <= n as f64 + 1.0)
            .unwrap_or(20.0 * mag);
        let mut v = (self.lo / step).ceil() * step;
        let mut out = Vec::new();
        while v <= self.hi + 1e-12 * span {
            out.push(if v.abs() < 1e-12 * span { 0.0 } else { v });
            v += step;
        }
        out
    }
}

/// Short label of a tick value.
pub fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.0e}");
        return s.replace("e0", "").replace("e-0", "e-");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    s
}

/// Escape text for SVG/HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A plot being drawn.
pub struct Plot {
    w: f64,
    h: f64,
    left: f64,
    bottom: f64,
    top: f64,
    right: f64,
    /// x axis.
    pub x: Axis,
    /// y axis.
    pub y: Axis,
    body: String,
}

impl Plot {
    /// A `w`×`h` plot with the given axes, titles and axis labels.
    pub fn new(w: f64, h: f64, x: Axis, y: Axis) -> Plot {
        Plot {
            w,
            h,
            left: 62.0,
            bottom: 44.0,
            top: 14.0,
            right: 14.0,
            x,
            y,
            body: String::new(),
        }
    }
    /// Pixel x of a data value.
    pub fn px(&self, v: f64) -> f64 {
        self.left + self.x.t(v) * (self.w - self.left - self.right)
    }
    /// Pixel y of a data value.
    pub fn py(&self, v: f64) -> f64 {
        self.h - self.bottom - self.y.t(v) * (self.h - self.bottom - self.top)
    }
    /// A circle at data (x, y) with pixel radius r.
    pub fn circle(&mut self, x: f64, y: f64, r: f64, class: &str, title: Option<&str>) {
        let (cx, cy) = (self.px(x), self.py(y));
        match title {
            Some(t) => {
                let _ = write!(
                    self.body,
                    r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="{r:.2}" class="{class}"><title>{}</title></circle>"#,
                    esc(t)
                );
            }
            None => {
                let _ = write!(
                    self.body,
                    r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="{r:.2}" class="{class}"/>"#
                );
            }
        }
    }
    /// A rectangle between data corners.
    pub fn rect(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, class: &str, opacity: f64) {
        let (a, b) = (self.px(x0), self.px(x1));
        let (c, d) = (self.py(y0), self.py(y1));
        let _ = write!(
            self.body,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" class="{class}" fill-opacity="{opacity:.3}"/>"#,
            a.min(b),
            c.min(d),
            (b - a).abs().max(0.6),
            (d - c).abs().max(0.6)
        );
    }
    /// A polyline through data points.
    pub fn line(&mut self, pts: &[(f64, f64)], class: &str) {
        if pts.len() < 2 {
            return;
        }
        let d: Vec<String> = pts
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", self.px(x), self.py(y)))
            .collect();
        let _ = write!(self.body, r#"<polyline points="{}" class="{class}"/>"#, d.join(" "));
    }
    /// A horizontal reference line at data y.
    pub fn hline(&mut self, y: f64, class: &str, label: &str) {
        if !(self.y.lo..=self.y.hi).contains(&y) {
            return;
        }
        let py = self.py(y);
        let _ = write!(
            self.body,
            r#"<line x1="{:.1}" x2="{:.1}" y1="{py:.1}" y2="{py:.1}" class="{class}"/><text x="{:.1}" y="{:.1}" class="ref" text-anchor="end">{}</text>"#,
            self.left,
            self.w - self.right,
            self.w - self.right - 2.0,
            py - 3.0,
            esc(label)
        );
    }
    /// A vertical reference line at data x.
    pub fn vline(&mut self, x: f64, class: &str, label: &str) {
        if !(self.x.lo..=self.x.hi).contains(&x) {
            return;
        }
        let px = self.px(x);
        let _ = write!(
            self.body,
            r#"<line x1="{px:.1}" x2="{px:.1}" y1="{:.1}" y2="{:.1}" class="{class}"/><text x="{:.1}" y="{:.1}" class="ref">{}</text>"#,
            self.top,
            self.h - self.bottom,
            px + 3.0,
            self.top + 10.0,
            esc(label)
        );
    }
    /// A text label at data (x, y), offset in pixels.
    pub fn label(&mut self, x: f64, y: f64, dx: f64, dy: f64, text: &str) {
        let _ = write!(
            self.body,
            r#"<text x="{:.1}" y="{:.1}" class="lab">{}</text>"#,
            self.px(x) + dx,
            self.py(y) + dy,
            esc(text)
        );
    }
    /// The finished SVG with axes, ticks and axis titles.
    pub fn finish(self, xlabel: &str, ylabel: &str, aria: &str) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{a}">"#,
            w = self.w,
            h = self.h,
            a = esc(aria)
        );
        let (x0, x1, y0, y1) = (self.left, self.w - self.right, self.top, self.h - self.bottom);
        let _ = write!(
            s,
            r#"<rect x="{x0}" y="{y0}" width="{:.1}" height="{:.1}" class="frame"/>"#,
            x1 - x0,
            y1 - y0
        );
        for t in self.x.ticks(6) {
            let p = self.px(t);
            let _ = write!(
                s,
                r#"<line x1="{p:.1}" x2="{p:.1}" y1="{y1}" y2="{:.1}" class="tick"/><text x="{p:.1}" y="{:.1}" class="tl" text-anchor="middle">{}</text>"#,
                y1 + 4.0,
                y1 + 16.0,
                fmt_num(t)
            );
        }
        for t in self.y.ticks(5) {
            let p = self.py(t);
            let _ = write!(
                s,
                r#"<line x1="{:.1}" x2="{x0}" y1="{p:.1}" y2="{p:.1}" class="tick"/><text x="{:.1}" y="{:.1}" class="tl" text-anchor="end">{}</text>"#,
                x0 - 4.0,
                x0 - 6.0,
                p + 4.0,
                fmt_num(t)
            );
        }
        s.push_str(&self.body);
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="ax" text-anchor="middle">{}</text><text x="14" y="{:.1}" class="ax" text-anchor="middle" transform="rotate(-90 14 {:.1})">{}</text></svg>"#,
            (x0 + x1) / 2.0,
            self.h - 8.0,
            esc(xlabel),
            (y0 + y1) / 2.0,
            (y0 + y1) / 2.0,
            esc(ylabel)
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside() {
        let a = Axis::linear(0.0, 0.93);
        let t = a.ticks(5);
        assert!(t.len() >= 4 && t.iter().all(|v| *v >= a.lo && *v <= a.hi));
        assert_eq!(fmt_num(0.2), "0.2");
        let l = Axis::log10(1e-6, 1.0);
        assert!(l.ticks(6).contains(&1e-3));
        assert_eq!(esc("<a&b>"), "&lt;a&amp;b&gt;");
    }
}
