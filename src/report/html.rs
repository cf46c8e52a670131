//! Renders a [`Report`] as one self-contained HTML page: inline CSS and inline SVG charts drawn
//! here; no script, font, image or request of any kind, so the file opens from disk anywhere.
//! Prints on A4, one section per page. Every drawn mark carries `data-*` attributes with the
//! numbers it stands for (ids and times as `snapshots --json` writes them, bytes as integers),
//! so tests and scripts can check the page against the JSON commands.
//!
//! Self-imposed constraint: pure string building from the report; every text that comes from
//! outside (paths, tags, messages, ids) goes through [`esc`].

use chrono::{DateTime, FixedOffset, Utc};

use super::{
    when, CacheSection, ClearRow, HealthSection, Report, RunRow, RunSection, SnapshotItem,
    SnapshotSection, StorageEvent, StorageSection, TypeSeries, Verdict,
};
use crate::health::Level;
use crate::manifest::SnapshotKind;
use crate::units::human_bytes;

/// Width of every chart in SVG user units (the page scales it to the column).
const W: f64 = 720.0;
/// Left margin of plots (axis labels).
const LEFT: f64 = 70.0;
/// Right margin of plots.
const RIGHT: f64 = 16.0;

/// Colour of a snapshot class (a kind's name, or `repaired`).
pub fn class_colour(class: &str) -> &'static str {
    match class {
        "backup" => "#2b6cb0",
        "pre-clear" => "#dd6b20",
        "pre-repair" => "#805ad5",
        "pre-restore" => "#b7791f",
        "archive" => "#2f855a",
        "repaired" => "#d53f8c",
        _ => "#718096",
    }
}

fn level_colour(l: Level) -> &'static str {
    match l {
        Level::Ok => "#38a169",
        Level::Warning => "#d69e2e",
        Level::Critical => "#e53e3e",
    }
}

fn result_colour(result: &str) -> &'static str {
    match result {
        "ok" => "#38a169",
        "partial" => "#dd6b20",
        "deferred" => "#d69e2e",
        "failed" => "#e53e3e",
        _ => "#a0aec0",
    }
}

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A coordinate, short.
fn n(v: f64) -> String {
    format!("{:.1}", v)
}

fn rfc(t: &DateTime<FixedOffset>) -> String {
    t.to_rfc3339()
}

const STYLE: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1a202c; background: #fff; max-width: 980px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 0 0 4px; border-bottom: 2px solid #e2e8f0; padding-bottom: 4px; }
h3 { font-size: 14px; margin: 12px 0 2px; }
.meta { color: #4a5568; margin: 0 0 18px; overflow-wrap: anywhere; }
section { margin: 0 0 30px; }
p.reading { font-weight: 600; margin: 6px 0 8px; }
svg.chart { display: block; width: 100%; height: auto; margin: 6px 0 10px; }
svg text { font-family: inherit; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; margin: 4px 0 12px; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #e2e8f0; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f7fafc; white-space: nowrap; }
td.nw, td code, .badge { white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f7fafc;
       padding: 0 3px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-weight: 700; }
.legend { font-size: 12px; margin: 0 0 8px; }
.legend span { display: inline-block; margin-right: 14px; white-space: nowrap; }
.legend i { display: inline-block; width: 11px; height: 11px; border-radius: 50%; margin-right: 5px;
            vertical-align: -1px; }
.legend i.hollow { background: #fff !important; border: 2px solid #4a5568; }
.empty { color: #718096; font-style: italic; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  section { break-before: page; }
  section#health { break-before: auto; }
  svg.chart, tr, .legend { break-inside: avoid; }
  thead { display: table-header-group; }
}
"#;

/// The page.
pub fn render(r: &Report) -> String {
    let mut out = String::with_capacity(64 << 10);
    let title = match &r.root {
        Some(root) => format!("cachevault report: {root}"),
        None => "cachevault report".to_string(),
    };
    out.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n",
        esc(&title)
    ));
    out.push_str(&format!(
        "<body data-report-version=\"{}\" data-now=\"{}\" data-since=\"{}\" data-days=\"{}\">\n",
        r.version,
        r.now.to_rfc3339(),
        r.since.to_rfc3339(),
        r.days
    ));
    out.push_str(&format!(
        "<header>\n<h1>cachevault report</h1>\n<p class=\"meta\">{}repository <code>{}</code> · \
         as of {} · charts cover the last {} days · times in UTC</p>\n</header>\n",
        r.root
            .as_ref()
            .map(|root| format!("cache root <code>{}</code> · ", esc(root)))
            .unwrap_or_default(),
        esc(&r.repository),
        esc(&when(&r.now.fixed_offset())),
        r.days
    ));
    health(&mut out, &r.health);
    cache(&mut out, &r.cache, r);
    snapshots(&mut out, &r.snapshots, r);
    storage(&mut out, &r.storage, r);
    runs(&mut out, &r.runs, r.days);
    out.push_str("</body>\n</html>\n");
    out
}

fn section_start(out: &mut String, id: &str, title: &str, reading: &str) {
    out.push_str(&format!(
        "<section id=\"{id}\" data-section=\"{id}\">\n<h2>{}</h2>\n<p class=\"reading\">{}</p>\n",
        esc(title),
        esc(reading)
    ));
}

fn svg_start(out: &mut String, chart: &str, height: f64, label: &str) {
    out.push_str(&format!(
        "<svg class=\"chart\" data-chart=\"{chart}\" xmlns=\"http://www.w3.org/2000/svg\" \
         viewBox=\"0 0 {W} {}\" width=\"{W}\" height=\"{}\" role=\"img\" aria-label=\"{}\">\n",
        n(height),
        n(height),
        esc(label)
    ));
}

fn text(out: &mut String, x: f64, y: f64, attrs: &str, s: &str) {
    out.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" {attrs}>{}</text>\n",
        n(x),
        n(y),
        esc(s)
    ));
}

// ---- 1. Health -------------------------------------------------------------------------

fn health(out: &mut String, h: &HealthSection) {
    section_start(out, "health", "1. Health", &h.reading);
    out.push_str(&format!(
        "<p>Status <span class=\"badge\" data-status=\"{0}\" style=\"background:{1}\">{0}</span></p>\n",
        h.status.as_str(),
        level_colour(h.status)
    ));
    let count = h.checks.len().max(1) as f64;
    let gap = 8.0;
    let tile = ((W - gap * (count - 1.0)) / count).min(170.0);
    svg_start(out, "health", 70.0, "health checks");
    for (i, c) in h.checks.iter().enumerate() {
        let x = i as f64 * (tile + gap);
        out.push_str(&format!(
            "<rect class=\"mark\" data-check=\"{}\" data-level=\"{}\" x=\"{}\" y=\"4\" width=\"{}\" height=\"62\" rx=\"7\" fill=\"{}\"><title>{}</title></rect>\n",
            esc(&c.check),
            c.level.as_str(),
            n(x),
            n(tile),
            level_colour(c.level),
            esc(&if c.messages.is_empty() {
                format!("{}: ok", c.check)
            } else {
                c.messages.join("\n")
            })
        ));
        let mid = x + tile / 2.0;
        text(
            out,
            mid,
            31.0,
            "text-anchor=\"middle\" font-size=\"15\" font-weight=\"700\" fill=\"#fff\"",
            &c.check,
        );
        text(
            out,
            mid,
            52.0,
            "text-anchor=\"middle\" font-size=\"12\" fill=\"#fff\"",
            c.level.as_str(),
        );
    }
    if h.checks.is_empty() {
        text(out, 10.0, 40.0, "class=\"empty\"", "no checks ran");
    }
    out.push_str("</svg>\n");
    out.push_str(
        "<table>\n<thead><tr><th>Check</th><th>Level</th><th>Reason</th></tr></thead>\n<tbody>\n",
    );
    for c in &h.checks {
        if c.messages.is_empty() {
            out.push_str(&format!(
                "<tr data-check=\"{0}\"><td>{0}</td><td>ok</td><td class=\"empty\">passed</td></tr>\n",
                esc(&c.check)
            ));
        }
    }
    for reason in &h.reasons {
        out.push_str(&format!(
            "<tr data-check=\"{0}\" data-level=\"{1}\"><td>{0}</td><td><span class=\"badge\" style=\"background:{2}\">{1}</span></td><td>{3}</td></tr>\n",
            esc(&reason.check),
            reason.level.as_str(),
            level_colour(reason.level),
            esc(&reason.message)
        ));
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

// ---- Scales and axes -------------------------------------------------------------------

/// Maps times in `[t0, t1]` to `[x0, x1]`.
struct TimeScale {
    t0: i64,
    t1: i64,
    x0: f64,
    x1: f64,
}

impl TimeScale {
    fn new(since: DateTime<Utc>, now: DateTime<Utc>, x0: f64, x1: f64) -> TimeScale {
        TimeScale {
            t0: since.timestamp(),
            t1: now.timestamp().max(since.timestamp() + 1),
            x0,
            x1,
        }
    }

    fn x(&self, t: &DateTime<FixedOffset>) -> f64 {
        let f = (t.timestamp() - self.t0) as f64 / (self.t1 - self.t0) as f64;
        self.x0 + f.clamp(0.0, 1.0) * (self.x1 - self.x0)
    }

    /// Tick marks and date labels along the bottom at `y`.
    fn axis(&self, out: &mut String, y: f64) {
        out.push_str(&format!(
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#a0aec0\"/>\n",
            n(self.x0),
            n(y),
            n(self.x1),
            n(y)
        ));
        let span = self.t1 - self.t0;
        let fmt = if span <= 2 * 86_400 {
            "%m-%d %H:%M"
        } else {
            "%Y-%m-%d"
        };
        for i in 0..=4 {
            let t = self.t0 + span * i / 4;
            let Some(time) = DateTime::from_timestamp(t, 0) else {
                continue;
            };
            let x = self.x(&time.fixed_offset());
            let anchor = match i {
                0 => "start",
                4 => "end",
                _ => "middle",
            };
            out.push_str(&format!(
                "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#a0aec0\"/>\n",
                n(x),
                n(y),
                n(y + 4.0)
            ));
            text(
                out,
                x,
                y + 16.0,
                &format!("text-anchor=\"{anchor}\" font-size=\"11\" fill=\"#4a5568\""),
                &time.format(fmt).to_string(),
            );
        }
    }
}

/// Maps `[0, max]` bytes to `[bottom, top]`.
struct ByteScale {
    max: f64,
    bottom: f64,
    top: f64,
}

impl ByteScale {
    fn y(&self, v: f64) -> f64 {
        let f = if self.max > 0.0 { v / self.max } else { 0.0 };
        self.bottom - f.clamp(0.0, 1.0) * (self.bottom - self.top)
    }

    /// Grid lines and byte labels at round values.
    fn axis(&self, out: &mut String, x0: f64, x1: f64) {
        let step = byte_step(self.max / 4.0);
        let mut v = 0.0;
        while v <= self.max + 0.5 {
            let y = self.y(v);
            out.push_str(&format!(
                "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#edf2f7\"/>\n",
                n(x0),
                n(y),
                n(x1),
                n(y)
            ));
            text(
                out,
                x0 - 6.0,
                y + 4.0,
                "text-anchor=\"end\" font-size=\"11\" fill=\"#4a5568\"",
                &human_bytes(v as u64),
            );
            if step <= 0.0 {
                break;
            }
            v += step;
        }
    }
}

/// A round step of bytes at least `raw`: a round number of B, KiB, MiB or GiB, so the
/// labels read 10 KiB, 20 KiB rather than 9.8 KiB, 19.5 KiB.
fn byte_step(raw: f64) -> f64 {
    let mut unit = 1.0;
    while raw >= unit * 1024.0 && unit < (1u64 << 40) as f64 {
        unit *= 1024.0;
    }
    nice_step(raw / unit) * unit
}

/// A round step (1, 2 or 5 times a power of ten) at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 0.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

// ---- 2. Cache size per type --------------------------------------------------------------

fn cache(out: &mut String, c: &CacheSection, r: &Report) {
    section_start(out, "cache", "2. Cache size per type", &c.reading);
    if c.types.is_empty() {
        svg_start(out, "cache", 60.0, "cache size per type");
        text(
            out,
            10.0,
            35.0,
            "font-size=\"13\" fill=\"#718096\"",
            "no cache types: give --config to see them",
        );
        out.push_str("</svg>\n</section>\n");
        return;
    }
    out.push_str(
        "<p class=\"legend\"><span><i style=\"background:#2b6cb0\"></i>size in each backup</span>\
         <span><i style=\"background:#1a202c;border-radius:0\"></i>size now</span>\
         <span><i style=\"background:#e53e3e;border-radius:0;height:3px\"></i>max_size_mb limit</span></p>\n",
    );
    for t in &c.types {
        type_chart(out, t, r);
    }
    out.push_str(
        "<table>\n<thead><tr><th>Cache type</th><th class=\"num\">Files</th><th class=\"num\">Size</th>\
         <th class=\"num\">Limit</th><th class=\"num\">Used</th><th class=\"num\">Growth</th>\
         <th class=\"num\">TTL</th><th class=\"num\">Past TTL now</th></tr></thead>\n<tbody>\n",
    );
    for t in &c.types {
        out.push_str(&format!(
            "<tr data-type=\"{}\" data-past-ttl=\"{}\" data-past-ttl-bytes=\"{}\"><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}%{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} ({})</td></tr>\n",
            esc(&t.name),
            t.past_ttl,
            t.past_ttl_bytes,
            esc(&t.name),
            t.files,
            human_bytes(t.bytes),
            human_bytes(t.limit_bytes),
            t.used_pct,
            if t.over_limit { " OVER" } else { "" },
            match (t.growth_pct, t.growth_days) {
                (Some(g), Some(d)) => format!("{g:+.1}% in {d:.0} d"),
                _ if !t.backed_up => "not backed up".into(),
                _ => "-".into(),
            },
            if t.ttl_hours < 0 {
                "never".to_string()
            } else {
                format!("{} h", t.ttl_hours)
            },
            t.past_ttl,
            human_bytes(t.past_ttl_bytes)
        ));
    }
    if let Some(total) = &c.total {
        out.push_str(&format!(
            "<tr><td><b>total</b></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}%{}</td><td></td><td></td><td class=\"num\">{} ({})</td></tr>\n",
            total.files,
            human_bytes(total.bytes),
            human_bytes(total.limit_bytes),
            total.used_pct,
            if total.over_limit { " OVER" } else { "" },
            c.past_ttl,
            human_bytes(c.past_ttl_bytes)
        ));
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn type_chart(out: &mut String, t: &TypeSeries, r: &Report) {
    let height = 170.0;
    let (top, bottom) = (30.0, height - 28.0);
    let data_max = t
        .points
        .iter()
        .map(|p| p.bytes)
        .chain([t.bytes])
        .max()
        .unwrap_or(0) as f64;
    let limit = t.limit_bytes as f64;
    // A limit far above the data would flatten the series to a line on the axis: then the
    // chart is scaled to the data and the limit is named instead of drawn.
    let limit_drawn = data_max == 0.0 || limit <= data_max * 4.0;
    let max = if limit_drawn {
        limit.max(data_max) * 1.1
    } else {
        data_max * 1.25
    };
    let xs = TimeScale::new(r.since, r.now, LEFT, W - RIGHT);
    let ys = ByteScale { max, bottom, top };
    svg_start(
        out,
        "cache-type",
        height,
        &format!("{} size over time", t.name),
    );
    out.push_str(&format!(
        "<g data-type=\"{}\" data-limit-bytes=\"{}\" data-bytes=\"{}\" data-files=\"{}\" data-past-ttl=\"{}\">\n",
        esc(&t.name),
        t.limit_bytes,
        t.bytes,
        t.files,
        t.past_ttl
    ));
    text(
        out,
        LEFT,
        16.0,
        "font-size=\"13\" font-weight=\"700\" fill=\"#1a202c\"",
        &t.name,
    );
    text(
        out,
        W - RIGHT,
        16.0,
        "text-anchor=\"end\" font-size=\"12\" fill=\"#4a5568\"",
        &format!(
            "{} of {} ({:.1}%) · {} past TTL",
            human_bytes(t.bytes),
            human_bytes(t.limit_bytes),
            t.used_pct,
            t.past_ttl
        ),
    );
    ys.axis(out, LEFT, W - RIGHT);
    xs.axis(out, bottom);
    if limit_drawn {
        let y = ys.y(limit);
        out.push_str(&format!(
            "<line class=\"limit\" data-limit-bytes=\"{}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#e53e3e\" stroke-width=\"2\" stroke-dasharray=\"6 4\"/>\n",
            t.limit_bytes,
            n(LEFT),
            n(y),
            n(W - RIGHT),
            n(y)
        ));
        text(
            out,
            W - RIGHT - 4.0,
            y - 4.0,
            "text-anchor=\"end\" font-size=\"11\" fill=\"#e53e3e\"",
            &format!("limit {}", human_bytes(t.limit_bytes)),
        );
    } else {
        out.push_str(&format!(
            "<text class=\"limit\" data-limit-bytes=\"{}\" x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"11\" fill=\"#e53e3e\">limit {} is far above (↑ {:.2}% used)</text>\n",
            t.limit_bytes,
            n(W - RIGHT - 4.0),
            n(top + 10.0),
            human_bytes(t.limit_bytes),
            t.used_pct
        ));
    }
    let now_x = xs.x(&r.now.fixed_offset());
    let now_y = ys.y(t.bytes as f64);
    if !t.points.is_empty() {
        let mut line: Vec<String> = t
            .points
            .iter()
            .map(|p| format!("{},{}", n(xs.x(&p.time)), n(ys.y(p.bytes as f64))))
            .collect();
        line.push(format!("{},{}", n(now_x), n(now_y)));
        out.push_str(&format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#2b6cb0\" stroke-width=\"2\"/>\n",
            line.join(" ")
        ));
    }
    for p in &t.points {
        out.push_str(&format!(
            "<circle class=\"mark\" data-type=\"{}\" data-snapshot=\"{}\" data-time=\"{}\" data-bytes=\"{}\" data-files=\"{}\" cx=\"{}\" cy=\"{}\" r=\"3.5\" fill=\"#2b6cb0\"><title>{}: {} in {} files ({})</title></circle>\n",
            esc(&t.name),
            p.snapshot,
            rfc(&p.time),
            p.bytes,
            p.files,
            n(xs.x(&p.time)),
            n(ys.y(p.bytes as f64)),
            esc(&when(&p.time)),
            human_bytes(p.bytes),
            p.files,
            &p.snapshot[..8.min(p.snapshot.len())]
        ));
    }
    out.push_str(&format!(
        "<rect class=\"mark now\" data-type=\"{}\" data-now=\"true\" data-bytes=\"{}\" data-files=\"{}\" x=\"{}\" y=\"{}\" width=\"9\" height=\"9\" fill=\"#1a202c\"><title>now: {} in {} files</title></rect>\n",
        esc(&t.name),
        t.bytes,
        t.files,
        n(now_x - 4.5),
        n(now_y - 4.5),
        human_bytes(t.bytes),
        t.files
    ));
    if !t.backed_up {
        text(
            out,
            LEFT + 8.0,
            top + 14.0,
            "font-size=\"12\" fill=\"#718096\"",
            "not backed up: no history, size now only",
        );
    } else if t.points.is_empty() {
        text(
            out,
            LEFT + 8.0,
            top + 14.0,
            "font-size=\"12\" fill=\"#718096\"",
            "no backup in the window: size now only",
        );
    }
    out.push_str("</g>\n</svg>\n");
}

// ---- 3. Snapshots --------------------------------------------------------------------------

fn snapshots(out: &mut String, s: &SnapshotSection, r: &Report) {
    section_start(out, "snapshots", "3. Snapshots and retention", &s.reading);
    out.push_str("<p class=\"legend\">");
    for class in SnapshotKind::ALL
        .iter()
        .map(|k| k.name())
        .chain([super::REPAIRED_TAG])
    {
        out.push_str(&format!(
            "<span data-legend=\"{class}\"><i style=\"background:{}\"></i>{class}</span>",
            class_colour(class)
        ));
    }
    out.push_str(
        "<span><i style=\"background:#4a5568\"></i>kept</span>\
         <span><i class=\"hollow\"></i>removed by the next forget</span></p>\n",
    );
    let lanes = SnapshotKind::ALL;
    let lane_h = 26.0;
    let top = 10.0;
    let bottom = top + lane_h * lanes.len() as f64;
    let height = bottom + 28.0;
    let left = 90.0;
    let xs = TimeScale::new(r.since, r.now, left, W - RIGHT);
    svg_start(out, "snapshots", height, "snapshots on a timeline");
    for (i, k) in lanes.iter().enumerate() {
        let y = top + lane_h * (i as f64 + 0.5);
        out.push_str(&format!(
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#edf2f7\" stroke-width=\"{}\"/>\n",
            n(left),
            n(y),
            n(W - RIGHT),
            n(y),
            n(lane_h - 4.0)
        ));
        text(
            out,
            left - 8.0,
            y + 4.0,
            "text-anchor=\"end\" font-size=\"12\" fill=\"#4a5568\"",
            k.name(),
        );
    }
    xs.axis(out, bottom);
    for item in s.items.iter().filter(|i| i.in_window) {
        let lane = lanes.iter().position(|k| *k == item.kind).unwrap_or(0);
        let y = top + lane_h * (lane as f64 + 0.5);
        snapshot_mark(out, item, xs.x(&item.time), y);
    }
    out.push_str("</svg>\n");
    if s.older > 0 {
        out.push_str(&format!(
            "<p class=\"empty\">{} older snapshot{} (before the window) are listed below, not drawn.</p>\n",
            s.older,
            if s.older == 1 { "" } else { "s" }
        ));
    }
    out.push_str(
        "<table>\n<thead><tr><th>Snapshot</th><th>Time</th><th>Kind</th><th>Tags</th>\
         <th class=\"num\">Files</th><th class=\"num\">Size</th><th class=\"num\">Added</th>\
         <th>Retention</th></tr></thead>\n<tbody>\n",
    );
    for item in s.items.iter().rev() {
        out.push_str(&format!(
            "<tr data-id=\"{}\" data-retention=\"{}\"><td><code>{}</code></td><td class=\"nw\">{}</td><td><span class=\"badge\" style=\"background:{}\">{}</span>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>\n",
            item.id,
            item.retention.name(),
            item.short_id,
            esc(&when(&item.time)),
            class_colour(&item.class),
            item.kind.name(),
            if item.complete { "" } else { " partial" },
            esc(&item.tags.join(", ")),
            item.files,
            human_bytes(item.bytes),
            human_bytes(item.bytes_added),
            match item.retention {
                Verdict::Keep => format!("keep: {}", esc(&item.reasons.join(", "))),
                Verdict::Remove => "<b>removed by the next forget</b>".into(),
                Verdict::NotPlanned => "<span class=\"empty\">another root; not planned</span>".into(),
            }
        ));
    }
    if s.items.is_empty() {
        out.push_str("<tr><td colspan=\"8\" class=\"empty\">no snapshots</td></tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn snapshot_mark(out: &mut String, item: &SnapshotItem, x: f64, y: f64) {
    let colour = class_colour(&item.class);
    let (fill, opacity) = match item.retention {
        Verdict::Keep => (colour, "1"),
        Verdict::Remove => ("#fff", "1"),
        Verdict::NotPlanned => (colour, "0.4"),
    };
    out.push_str(&format!(
        "<circle class=\"mark\" data-id=\"{}\" data-kind=\"{}\" data-class=\"{}\" data-time=\"{}\" data-retention=\"{}\" data-reasons=\"{}\" data-bytes-added=\"{}\" cx=\"{}\" cy=\"{}\" r=\"6\" fill=\"{fill}\" fill-opacity=\"{opacity}\" stroke=\"{colour}\" stroke-width=\"2\"><title>{} {} {}: {}</title></circle>\n",
        item.id,
        item.kind.name(),
        esc(&item.class),
        rfc(&item.time),
        item.retention.name(),
        esc(&item.reasons.join("; ")),
        item.bytes_added,
        n(x),
        n(y),
        item.short_id,
        esc(&item.class),
        esc(&when(&item.time)),
        match item.retention {
            Verdict::Keep => format!("kept ({})", esc(&item.reasons.join(", "))),
            Verdict::Remove => "removed by the next forget".into(),
            Verdict::NotPlanned => "not planned".into(),
        }
    ));
}

// ---- 4. Repository ---------------------------------------------------------------------

fn storage(out: &mut String, s: &StorageSection, r: &Report) {
    section_start(out, "storage", "4. Repository", &s.reading);
    let height = 190.0;
    let (top, bottom) = (14.0, height - 28.0);
    let max = s.points.iter().map(|p| p.bytes.max(0)).max().unwrap_or(0) as f64 * 1.1;
    let xs = TimeScale::new(r.since, r.now, LEFT, W - RIGHT);
    let ys = ByteScale { max, bottom, top };
    svg_start(out, "storage", height, "stored bytes over time");
    ys.axis(out, LEFT, W - RIGHT);
    xs.axis(out, bottom);
    if !s.points.is_empty() {
        let mut path = String::new();
        for (i, p) in s.points.iter().enumerate() {
            let (x, y) = (xs.x(&p.time), ys.y(p.bytes.max(0) as f64));
            if i == 0 {
                path.push_str(&format!("M{} {}", n(x), n(y)));
            } else {
                path.push_str(&format!(" H{} V{}", n(x), n(y)));
            }
        }
        out.push_str(&format!(
            "<path d=\"{path}\" fill=\"none\" stroke=\"#2c5282\" stroke-width=\"2\"/>\n"
        ));
    }
    for p in &s.points {
        let (x, y) = (xs.x(&p.time), ys.y(p.bytes.max(0) as f64));
        let (shape, colour) = match p.event {
            StorageEvent::Snapshot => ("circle", "#2b6cb0"),
            StorageEvent::Forgotten => ("circle", "#90cdf4"),
            StorageEvent::Prune => ("circle", "#e53e3e"),
            StorageEvent::Start => ("circle", "#a0aec0"),
            StorageEvent::Now => ("rect", "#1a202c"),
        };
        let data = format!(
            "class=\"mark\" data-event=\"{}\" data-time=\"{}\" data-bytes=\"{}\" data-delta=\"{}\"{}",
            match p.event {
                StorageEvent::Start => "start",
                StorageEvent::Snapshot => "snapshot",
                StorageEvent::Forgotten => "forgotten",
                StorageEvent::Prune => "prune",
                StorageEvent::Now => "now",
            },
            rfc(&p.time),
            p.bytes,
            p.delta,
            p.snapshot
                .as_ref()
                .map(|id| format!(" data-snapshot=\"{id}\""))
                .unwrap_or_default()
        );
        let title = format!(
            "{}: {} stored{}",
            when(&p.time),
            human_bytes(p.bytes.max(0) as u64),
            if p.delta < 0 {
                format!(" (prune freed {})", human_bytes(p.delta.unsigned_abs()))
            } else if p.delta > 0 {
                format!(" (+{})", human_bytes(p.delta as u64))
            } else {
                String::new()
            }
        );
        if shape == "rect" {
            out.push_str(&format!(
                "<rect {data} x=\"{}\" y=\"{}\" width=\"9\" height=\"9\" fill=\"{colour}\"><title>{}</title></rect>\n",
                n(x - 4.5),
                n(y - 4.5),
                esc(&title)
            ));
        } else {
            out.push_str(&format!(
                "<circle {data} cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"{colour}\"><title>{}</title></circle>\n",
                n(x),
                n(y),
                if p.event == StorageEvent::Prune { "5" } else { "3" },
                esc(&title)
            ));
        }
    }
    out.push_str("</svg>\n");
    out.push_str(
        "<p class=\"legend\"><span><i style=\"background:#2b6cb0\"></i>snapshot added</span>\
         <span><i style=\"background:#90cdf4\"></i>snapshot since forgotten added</span>\
         <span><i style=\"background:#e53e3e\"></i>prune freed</span>\
         <span><i style=\"background:#1a202c;border-radius:0\"></i>measured now</span></p>\n",
    );
    let ratio = |v: Option<f64>| v.map(|v| format!("{v:.2}x")).unwrap_or_else(|| "-".into());
    let growth = |k: &str| {
        s.growth
            .get(k)
            .map(|g| {
                format!(
                    "{}/day ({} snapshots)",
                    human_bytes(g.bytes_per_day.round() as u64),
                    g.snapshots
                )
            })
            .unwrap_or_else(|| "-".into())
    };
    let rows = [
        (
            "snapshots",
            s.snapshots.to_string(),
            s.snapshots.to_string(),
        ),
        (
            "stored_bytes",
            format!(
                "{} (archives {}, index {}, manifests {})",
                human_bytes(s.stored_bytes),
                human_bytes(s.stored.archives),
                human_bytes(s.stored.index),
                human_bytes(s.stored.snapshots)
            ),
            s.stored_bytes.to_string(),
        ),
        (
            "bytes_before_dedup",
            human_bytes(s.bytes_before_dedup),
            s.bytes_before_dedup.to_string(),
        ),
        (
            "unique_bytes",
            human_bytes(s.unique_bytes),
            s.unique_bytes.to_string(),
        ),
        (
            "dedup_ratio",
            ratio(s.dedup_ratio),
            s.dedup_ratio.map(|v| v.to_string()).unwrap_or_default(),
        ),
        (
            "compression_ratio",
            ratio(s.compression_ratio),
            s.compression_ratio
                .map(|v| v.to_string())
                .unwrap_or_default(),
        ),
        (
            "total_ratio",
            ratio(s.total_ratio),
            s.total_ratio.map(|v| v.to_string()).unwrap_or_default(),
        ),
        (
            "growth_7d",
            growth("7d"),
            s.growth
                .get("7d")
                .map(|g| g.bytes_per_day.to_string())
                .unwrap_or_default(),
        ),
        (
            "growth_30d",
            growth("30d"),
            s.growth
                .get("30d")
                .map(|g| g.bytes_per_day.to_string())
                .unwrap_or_default(),
        ),
    ];
    out.push_str("<table>\n<thead><tr><th>Repository</th><th>Value</th></tr></thead>\n<tbody>\n");
    for (key, shown, value) in rows {
        out.push_str(&format!(
            "<tr data-stat=\"{key}\" data-value=\"{}\"><td>{}</td><td>{}</td></tr>\n",
            esc(&value),
            key.replace('_', " "),
            esc(&shown)
        ));
    }
    out.push_str("</tbody>\n</table>\n<h3>Copies</h3>\n<table>\n<thead><tr><th>copy_to repository</th><th>Last copy</th></tr></thead>\n<tbody>\n");
    if s.copies.is_empty() {
        out.push_str(
            "<tr data-copies=\"none\"><td colspan=\"2\" class=\"empty\">no copies configured</td></tr>\n",
        );
    }
    for c in &s.copies {
        out.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td></tr>\n",
            esc(&c.repository),
            c.last_copy
                .as_ref()
                .map(when)
                .unwrap_or_else(|| "never".into())
        ));
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

// ---- 5. Runs ---------------------------------------------------------------------------

const JOBS: [&str; 4] = ["backup", "clearing", "validation", "optimization"];

fn bytes_text(b: i64) -> String {
    match b {
        0 => String::new(),
        b if b < 0 => format!("-{}", human_bytes(b.unsigned_abs())),
        b => format!("+{}", human_bytes(b as u64)),
    }
}

fn run_time(run: &RunRow) -> DateTime<FixedOffset> {
    run.now.unwrap_or(run.time)
}

fn runs(out: &mut String, s: &RunSection, days: u32) {
    section_start(out, "runs", "5. Scheduled runs (run-due)", &s.reading);
    out.push_str("<p class=\"legend\">");
    for result in ["ok", "failed", "deferred"] {
        out.push_str(&format!(
            "<span><i style=\"background:{};border-radius:2px\"></i>{result}</span>",
            result_colour(result)
        ));
    }
    out.push_str(
        "<span><i style=\"background:#edf2f7;border-radius:2px\"></i>not due</span></p>\n",
    );
    let label_w = 150.0;
    let row_h = 24.0;
    let head = 22.0;
    let height = head + row_h * s.runs.len().max(1) as f64 + 6.0;
    let cell_w = (W - label_w - RIGHT) / JOBS.len() as f64;
    svg_start(out, "runs", height, "run-due runs and their jobs");
    for (i, job) in JOBS.iter().enumerate() {
        text(
            out,
            label_w + cell_w * (i as f64 + 0.5),
            15.0,
            "text-anchor=\"middle\" font-size=\"12\" font-weight=\"700\" fill=\"#4a5568\"",
            job,
        );
    }
    if s.runs.is_empty() {
        text(
            out,
            10.0,
            head + 16.0,
            "font-size=\"12\" fill=\"#718096\"",
            &format!("no run-due run ran a job in the last {days} days"),
        );
    }
    for (r, run) in s.runs.iter().enumerate() {
        let y = head + row_h * r as f64;
        text(
            out,
            label_w - 8.0,
            y + 16.0,
            "text-anchor=\"end\" font-size=\"12\" fill=\"#1a202c\"",
            &run_time(run)
                .with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M")
                .to_string(),
        );
        for (i, job) in JOBS.iter().enumerate() {
            let x = label_w + cell_w * i as f64 + 2.0;
            match run.jobs.iter().find(|j| j.job == *job) {
                Some(j) => {
                    out.push_str(&format!(
                        "<rect class=\"mark\" data-run=\"{}\" data-job=\"{}\" data-result=\"{}\" data-seconds=\"{}\" data-bytes=\"{}\" data-time=\"{}\"{} x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"3\" fill=\"{}\"><title>{}</title></rect>\n",
                        esc(&run.run_id),
                        job,
                        esc(&j.result),
                        j.seconds,
                        j.bytes,
                        rfc(&j.time),
                        j.clear_id
                            .as_ref()
                            .map(|c| format!(" data-clear-id=\"{}\"", esc(c)))
                            .unwrap_or_default(),
                        n(x),
                        n(y + 2.0),
                        n(cell_w - 4.0),
                        n(row_h - 4.0),
                        result_colour(&j.result),
                        esc(&format!(
                            "{job}: {}{}",
                            j.result,
                            j.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
                        ))
                    ));
                    text(
                        out,
                        x + (cell_w - 4.0) / 2.0,
                        y + 17.0,
                        "text-anchor=\"middle\" font-size=\"11\" fill=\"#fff\"",
                        &format!("{:.2} s {}", j.seconds, bytes_text(j.bytes)),
                    );
                }
                None => out.push_str(&format!(
                    "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"3\" fill=\"#edf2f7\"/>\n",
                    n(x),
                    n(y + 2.0),
                    n(cell_w - 4.0),
                    n(row_h - 4.0)
                )),
            }
        }
    }
    out.push_str("</svg>\n");
    if s.idle_runs > 0 {
        out.push_str(&format!(
            "<p class=\"empty\">{} more run{} found nothing due.</p>\n",
            s.idle_runs,
            if s.idle_runs == 1 { "" } else { "s" }
        ));
    }
    out.push_str(
        "<h3>Jobs that failed, were deferred or cleared</h3>\n<table>\n<thead><tr><th>Run for</th><th>Job</th><th>Result</th><th class=\"num\">Took</th>\
         <th class=\"num\">Bytes</th><th>Details</th></tr></thead>\n<tbody>\n",
    );
    let notable = |j: &&super::JobRow| j.result != "ok" || j.clear_id.is_some();
    let mut listed = 0;
    for run in s.runs.iter().rev() {
        for j in run.jobs.iter().filter(notable) {
            listed += 1;
            let mut details = Vec::new();
            if let Some(e) = &j.error {
                details.push(esc(e));
            }
            if let (Some(id), Some(freed)) = (&j.clear_id, j.bytes_freed) {
                details.push(format!(
                    "clear <code>{}</code> freed {}",
                    esc(id),
                    human_bytes(freed)
                ));
            }
            if let Some(u) = &j.undo {
                details.push(format!("undo: <code>{}</code>", esc(u)));
            }
            out.push_str(&format!(
                "<tr data-run=\"{}\" data-job=\"{}\"><td class=\"nw\">{}</td><td class=\"nw\">{}</td><td><span class=\"badge\" style=\"background:{}\">{}</span></td><td class=\"num\">{:.2} s</td><td class=\"num\">{}</td><td>{}</td></tr>\n",
                esc(&run.run_id),
                esc(&j.job),
                esc(&when(&run_time(run))),
                esc(&j.job),
                result_colour(&j.result),
                esc(&j.result),
                j.seconds,
                bytes_text(j.bytes),
                details.join("; ")
            ));
        }
    }
    if listed == 0 {
        out.push_str("<tr><td colspan=\"6\" class=\"empty\">every job shown went well and cleared nothing</td></tr>\n");
    }
    out.push_str("</tbody>\n</table>\n<h3>Clears</h3>\n");
    clears(out, &s.clears);
    out.push_str("</section>\n");
}

fn clears(out: &mut String, list: &[ClearRow]) {
    out.push_str(
        "<table>\n<thead><tr><th>Cleared for</th><th>By</th><th>Strategy</th><th>Result</th>\
         <th class=\"num\">Freed</th><th>Undo</th></tr></thead>\n<tbody>\n",
    );
    for c in list.iter().rev() {
        out.push_str(&format!(
            "<tr class=\"clear\" data-result=\"{}\" data-bytes-freed=\"{}\"{}><td class=\"nw\">{}</td><td class=\"nw\">{}</td><td class=\"nw\">{}</td><td><span class=\"badge\" style=\"background:{}\">{}</span></td><td class=\"num\">{}</td><td>{}</td></tr>\n",
            esc(&c.result),
            c.bytes_freed,
            c.clear_id
                .as_ref()
                .map(|id| format!(" data-clear-id=\"{}\"", esc(id)))
                .unwrap_or_default(),
            esc(&when(&c.now.unwrap_or(c.time))),
            esc(&c.operation),
            esc(c.strategy.as_deref().unwrap_or("-")),
            result_colour(&c.result),
            esc(&c.result),
            human_bytes(c.bytes_freed),
            match (&c.undo, &c.deferred_reason) {
                (Some(u), _) => format!("<code>{}</code>", esc(u)),
                (None, Some(why)) => format!("<span class=\"empty\">nothing cleared: {}</span>", esc(why)),
                (None, None) => "<span class=\"empty\">nothing to undo</span>".into(),
            }
        ));
    }
    if list.is_empty() {
        out.push_str(
            "<tr><td colspan=\"6\" class=\"empty\">nothing cleared or deferred</td></tr>\n",
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_from_outside() {
        assert_eq!(
            esc("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(0.0), 0.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(120.0), 200.0);
        assert_eq!(nice_step(1000.0), 1000.0);
        assert_eq!(byte_step(5.35 * 1024.0), 10.0 * 1024.0);
        assert_eq!(byte_step(300.0 * 1024.0 * 1024.0), 500.0 * 1024.0 * 1024.0);
    }
}
