//! `cargo vm bench`'s report: the guest's figures as JSON, a Markdown table
//! (the migration KPIs next to the TCP baseline, as the paper's Tables
//! IV/VI/VIII lay them out, then every figure) and one SVG plot per group
//! of scaling curves (capture/restore time against associations or PDP
//! contexts).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use epcmig_figures::Figure;

/// The figures among the guest's output lines.
pub fn parse(lines: &[String]) -> Result<Vec<Figure>> {
    lines
        .iter()
        .filter_map(|l| Some((l, Figure::from_line(l)?)))
        .map(|(l, f)| f.with_context(|| format!("a figure line: {l}")))
        .collect()
}

/// The migration KPIs, in the order of the paper's tables.
const KPIS: &[(&str, &str)] = &[
    ("migration.checkpoint", "checkpoint (criu dump)"),
    ("migration.transfer", "image transfer (A->B link)"),
    ("migration.restore", "restore (criu restore)"),
    ("migration.total", "migration time (total)"),
    ("migration.downtime", "downtime seen by the peers"),
    ("migration.image_bytes", "network load (image bytes)"),
    ("migration.ue_service_recovery", "UE service recovery"),
    (
        "migration.messages_checked",
        "messages checked by the peers",
    ),
];

fn num(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// The Markdown report.
pub fn table(figs: &[Figure], release: &str) -> String {
    let mut md = format!("# epcmig benchmark report\n\nMeasured on kernel `{release}`.\n\n");
    let by_name: BTreeMap<&str, &Figure> = figs.iter().map(|f| (f.name.as_str(), f)).collect();
    if KPIS.iter().any(|(n, _)| by_name.contains_key(n)) {
        md.push_str(
            "## Migration of the EPC container (MME + SPGW) and the TCP baseline, same run\n\n\
             | KPI | EPC (SCTP + GTP-U) | TCP baseline | ratio |\n|---|---:|---:|---:|\n",
        );
        for (name, label) in KPIS {
            if let Some(f) = by_name.get(name) {
                let _ = writeln!(
                    md,
                    "| {label} | {} | {} | {} |",
                    f.show(f.value),
                    f.baseline.map_or("-".into(), |b| f.show(b)),
                    f.ratio.map_or("-".into(), |r| format!("{r:.2}x")),
                );
            }
        }
        md.push_str(
            "\nFor times the ratio is baseline / EPC (above 1: the EPC migration is faster); \
             for sizes and counts, EPC / baseline. No message was lost, duplicated or \
             reordered: the bench fails otherwise.\n\n",
        );
    }
    md.push_str("## All figures\n\n| figure | value | baseline | ratio |\n|---|---:|---:|---:|\n");
    for f in figs {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            f.name,
            f.show(f.value),
            f.baseline.map_or("-".into(), |b| f.show(b)),
            f.ratio.map_or("-".into(), |r| format!("{r:.2}x")),
        );
    }
    md
}

/// Scaling curves grouped by the first word of their series name.
fn groups(figs: &[Figure]) -> BTreeMap<String, BTreeMap<String, Vec<(f64, f64)>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<(f64, f64)>>> = BTreeMap::new();
    for f in figs {
        let (Some(series), Some(x)) = (&f.series, f.x) else {
            continue;
        };
        if x <= 0.0 || f.value <= 0.0 {
            continue; // not on a log-log plot
        }
        let group = series.split_whitespace().next().unwrap_or("").to_string();
        out.entry(group)
            .or_default()
            .entry(series.clone())
            .or_default()
            .push((x, f.value));
    }
    for curves in out.values_mut() {
        for pts in curves.values_mut() {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
    }
    out
}

/// The label of decade tick 10^e: 0.001, 1, 1000...
fn tick(e: f64) -> String {
    let e = e as i32;
    if e >= 0 {
        10f64.powi(e).to_string()
    } else {
        format!("{:.*}", (-e) as usize, 10f64.powi(e))
    }
}

const COLOURS: &[&str] = &["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

/// A log-log SVG plot of the curves of one group.
pub fn svg(title: &str, xlabel: &str, curves: &BTreeMap<String, Vec<(f64, f64)>>) -> String {
    let (w, h, l, r, t, b) = (640.0, 400.0, 70.0, 20.0, 40.0, 110.0);
    let all: Vec<(f64, f64)> = curves.values().flatten().copied().collect();
    let decade = |v: f64, up: bool| {
        let e = v.log10();
        if up {
            e.ceil()
        } else {
            e.floor()
        }
    };
    let fold = |f: fn(f64, f64) -> f64, init: f64, pick: fn(&(f64, f64)) -> f64| {
        all.iter().map(pick).fold(init, f)
    };
    let x0 = decade(fold(f64::min, f64::MAX, |p| p.0), false);
    let mut x1 = decade(fold(f64::max, f64::MIN, |p| p.0), true);
    let y0 = decade(fold(f64::min, f64::MAX, |p| p.1), false);
    let mut y1 = decade(fold(f64::max, f64::MIN, |p| p.1), true);
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let px = |x: f64| l + (x.log10() - x0) / (x1 - x0) * (w - l - r);
    let py = |y: f64| h - b - (y.log10() - y0) / (y1 - y0) * (h - t - b);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{title}</text>\n",
        w / 2.0
    );
    // Axes and decade grid lines.
    let mut e = x0;
    while e <= x1 {
        let x = px(10f64.powf(e));
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{t}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            h - b,
            h - b + 16.0,
            tick(e)
        );
        e += 1.0;
    }
    let mut e = y0;
    while e <= y1 {
        let y = py(10f64.powf(e));
        let _ = writeln!(
            s,
            "<line x1=\"{l}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            w - r,
            l - 6.0,
            y + 4.0,
            tick(e)
        );
        e += 1.0;
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{xlabel} (log)</text>\n\
         <text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">\
         time, s (log)</text>",
        (l + w - r) / 2.0,
        h - b + 34.0,
        (t + h - b) / 2.0,
        (t + h - b) / 2.0
    );
    for (i, (name, pts)) in curves.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for &(x, y) in pts {
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"><title>{name}: {} at {}</title></circle>",
                px(x),
                py(y),
                num(y),
                num(x)
            );
        }
        let ly = h - b + 54.0 + 16.0 * i as f64;
        let _ = writeln!(
            s,
            "<line x1=\"{l}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{c}\" stroke-width=\"2\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{name}</text>",
            l + 24.0,
            l + 30.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// What the x axis of a group counts.
fn xlabel(group: &str) -> &'static str {
    match group {
        "sctp" => "associations",
        "gtp" => "PDP contexts",
        _ => "count",
    }
}

/// Writes bench.json, bench.md and `<group>-scaling.svg` under `dir` for
/// figures measured on kernel `release`; returns the files written.
pub fn write(dir: &Path, release: &str, figs: &[Figure]) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = Vec::new();
    let mut put = |name: String, text: String| -> Result<()> {
        let p = dir.join(name);
        fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        files.push(p);
        Ok(())
    };
    put(
        "bench.json".into(),
        serde_json::to_string_pretty(figs)? + "\n",
    )?;
    put("bench.md".into(), table(figs, release))?;
    for (group, curves) in groups(figs) {
        let title = format!("{group}: time against {}", xlabel(&group));
        put(
            format!("{group}-scaling.svg"),
            svg(&title, xlabel(&group), &curves),
        )?;
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(name: &str, value: f64, series: Option<(&str, f64)>) -> Figure {
        Figure {
            name: name.into(),
            unit: "s".into(),
            value,
            baseline: Some(2.0),
            ratio: Some(2.0 / value),
            series: series.map(|s| s.0.into()),
            x: series.map(|s| s.1),
        }
    }

    #[test]
    fn parses_the_figure_lines_among_the_guest_output() {
        let l = |s: &str| s.to_string();
        let figs = parse(&[
            l("bench gtp:"),
            l(r#"epcmig-figure: {"name":"gtp.capture_1k","unit":"s","value":0.5,"baseline":null,"ratio":null,"series":"gtp capture","x":1000.0}"#),
            l("  migration.total 3.000 s"),
            l(r#"epcmig-figure: {"name":"migration.total","unit":"s","value":3.0,"baseline":6.0,"ratio":2.0}"#),
        ])
        .unwrap();
        assert_eq!(figs.len(), 2);
        assert_eq!(figs[0].x, Some(1000.0));
        assert_eq!(figs[1].series, None);
        assert!(parse(&[l("epcmig-figure: {not json")]).is_err());
    }

    #[test]
    fn table_puts_kpis_next_to_the_baseline() {
        let md = table(
            &[fig("migration.total", 1.0, None), fig("x.y", 3.0, None)],
            "6.12-test",
        );
        assert!(md.contains("Measured on kernel `6.12-test`."), "{md}");
        assert!(
            md.contains("| migration time (total) | 1 s | 2 s | 2.00x |"),
            "{md}"
        );
        assert!(md.contains("| x.y | 3 s | 2 s | 0.67x |"), "{md}");
    }

    #[test]
    fn plots_one_curve_per_series_on_log_axes() {
        let figs = [
            fig("sctp.capture_1", 0.001, Some(("sctp capture", 1.0))),
            fig("sctp.capture_1000", 0.9, Some(("sctp capture", 1000.0))),
            fig("sctp.restore_1", 0.002, Some(("sctp restore", 1.0))),
            fig("gtp.capture_1k", 0.1, Some(("gtp capture", 1000.0))),
            fig("not.plotted", 1.0, None),
        ];
        let g = groups(&figs);
        assert_eq!(g.keys().collect::<Vec<_>>(), ["gtp", "sctp"]);
        assert_eq!(g["sctp"]["sctp capture"], [(1.0, 0.001), (1000.0, 0.9)]);
        let s = svg("t", "associations", &g["sctp"]);
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains(">1000<") && s.contains(">0.001<"), "{s}");
    }
}
