//! `cargo vm bench`'s report: the guest's figures as JSON, a Markdown table
//! (the migration KPIs next to the TCP baseline, as the paper's Tables
//! IV/VI/VIII lay them out, then every figure with what its baseline is
//! and which way it improves) and one SVG plot per group of scaling curves
//! (capture/restore time against associations or PDP contexts), drawn by
//! plotters.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use plotters::prelude::*;

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

/// What [`Figure::ratio`] means, for the report's readers.
const RATIO_IS: &str = "The ratio is how many times better than its baseline a figure is, \
     whichever way it improves (`better`): baseline / value where lower is better, \
     value / baseline where higher is. Above 1 the figure beats its baseline, below 1 \
     the baseline wins.";

/// A Markdown table cell: a `|` in a name or phrase would end the cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn baseline(f: &Figure) -> String {
    f.baseline.map_or("-".into(), |b| f.show(b))
}

fn ratio(f: &Figure) -> String {
    f.ratio.map_or("-".into(), |r| format!("{r:.2}x"))
}

/// The Markdown report.
pub fn table(figs: &[Figure], release: &str) -> String {
    let mut md = format!("# epcmig benchmark report\n\nMeasured on kernel `{release}`.\n\n");
    let by_name: BTreeMap<&str, &Figure> = figs.iter().map(|f| (f.name.as_str(), f)).collect();
    let kpis: Vec<(&str, &Figure)> = KPIS
        .iter()
        .filter_map(|(n, label)| Some((*label, *by_name.get(n)?)))
        .collect();
    if !kpis.is_empty() {
        md.push_str(
            "## Migration of the EPC container (MME + SPGW) and the TCP baseline, same run\n\n\
             | KPI | EPC (SCTP + GTP-U) | TCP baseline | better | ratio |\n\
             |---|---:|---:|---|---:|\n",
        );
        for (label, f) in &kpis {
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {} | {} |",
                f.show(f.value),
                baseline(f),
                f.better,
                ratio(f),
            );
        }
        let against: BTreeSet<&str> = kpis
            .iter()
            .filter_map(|(_, f)| f.baseline_is.as_deref())
            .collect();
        if !against.is_empty() {
            let list: Vec<&str> = against.into_iter().collect();
            let _ = write!(md, "\nThe baseline: {}. ", list.join("; "));
        } else {
            md.push('\n');
        }
        let _ = write!(
            md,
            "{RATIO_IS} No message was lost, duplicated or reordered: the bench fails \
             otherwise.\n\n"
        );
    }
    let rows = timeline_rows(figs);
    if !rows.is_empty() {
        md.push_str(
            "## Where the time goes\n\nEach migration's stages, in seconds from the start of \
             `criu dump` (CRIU's log stamps, the plugin's lines among them, and what the test \
             timed itself), drawn in `timeline.svg`.\n",
        );
        for (row, segs) in &rows {
            let _ = write!(
                md,
                "\n### {}\n\n| stage | start | took |\n|---|---:|---:|\n",
                cell(row)
            );
            for (stage, a, b) in segs {
                let _ = writeln!(md, "| {} | {a:.3} s | {:.3} s |", cell(stage), b - a);
            }
        }
        md.push('\n');
    }
    md.push_str(
        "## All figures\n\n\
         | figure | value | baseline | baseline is | better | ratio |\n\
         |---|---:|---:|---|---|---:|\n",
    );
    for f in figs {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            cell(&f.name),
            f.show(f.value),
            baseline(f),
            f.baseline_is.as_deref().map_or("-".into(), cell),
            f.better,
            ratio(f),
        );
    }
    let _ = writeln!(md, "\n{RATIO_IS} `-`: the figure has no baseline.");
    md
}

/// Scaling curves grouped by the first word of their series name.
fn groups(figs: &[Figure]) -> BTreeMap<String, BTreeMap<String, Vec<(f64, f64)>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<(f64, f64)>>> = BTreeMap::new();
    let on_log_axes = |v: f64| v.is_finite() && v > 0.0;
    for f in figs {
        let (Some(series), Some(x)) = (&f.series, f.x) else {
            continue;
        };
        if !on_log_axes(x) || !on_log_axes(f.value) {
            continue;
        }
        let group = series.split_whitespace().next().unwrap_or("").to_string();
        if group == TIMELINE {
            continue;
        }
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

/// The whole decades around `values`, one at least: a log axis labelled
/// at its ends.
fn decades(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let lo = lo.log10().floor();
    let hi = hi.log10().ceil().max(lo + 1.0);
    10f64.powf(lo)..10f64.powf(hi)
}

/// `decades` a hair wider: plotters labels the powers of 10 it finds
/// inside the range by rounding logarithms, and 10^-3 as a float (above
/// 0.001) would lose its label to that rounding.
fn log_axis(values: impl Iterator<Item = f64>) -> Range<f64> {
    let Range { start, end } = decades(values);
    start * (1.0 - 1e-9)..end * (1.0 + 1e-9)
}

/// An axis label: [`Figure::show`]'s reading without padding zeros ("1
/// ms", not "1.000 ms").
fn tick(v: f64, unit: &str) -> String {
    let s = epcmig_figures::show(v, unit);
    let (n, u) = s.split_once(' ').unwrap_or((&s, ""));
    let n = if n.contains('.') && !n.contains('e') {
        n.trim_end_matches('0').trim_end_matches('.')
    } else {
        n
    };
    format!("{n} {u}").trim_end().to_string()
}

/// The curves' and the timeline stages' colours, in turn.
const COLOURS: &[RGBColor] = &[
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0xae, 0xc7, 0xe8),
    RGBColor(0xff, 0xbb, 0x78),
    RGBColor(0x98, 0xdf, 0x8a),
    RGBColor(0xff, 0x98, 0x96),
    RGBColor(0xc5, 0xb0, 0xd5),
    RGBColor(0xc4, 0x9c, 0x94),
    RGBColor(0xf7, 0xb6, 0xd2),
    RGBColor(0xdb, 0xdb, 0x8d),
    RGBColor(0x9e, 0xda, 0xe5),
    RGBColor(0x39, 0x3b, 0x79),
    RGBColor(0x63, 0x79, 0x39),
];

/// Font sizes: plotters writes size s as an SVG font-size of s / 1.24, so
/// these come out at 12 and 15 px.
const TEXT: f64 = 12.0 * 1.24;
const TITLE: f64 = 15.0 * 1.24;

/// The plot's size above its legend, its margin and the width of its y
/// labels, and a legend row's height, in pixels.
const PLOT: (u32, u32) = (640, 400);
const MARGIN: u32 = 12;
const Y_LABELS: u32 = 70;
const LEGEND_ROW: u32 = 16;

/// A log-log SVG plot of the curves of one group, times against
/// `xlabel`; the legend goes below the plot, where series names as long
/// as "gtp restore (batched GTP_CMD_NEWPDP, stock kernel)" cover no
/// curve.
pub fn svg(
    title: &str,
    xlabel: &str,
    curves: &BTreeMap<String, Vec<(f64, f64)>>,
) -> Result<String> {
    let points = || curves.values().flatten();
    ensure!(points().next().is_some(), "{title}: no points to plot");
    let (w, h) = PLOT;
    let rows = u32::try_from(curves.len()).unwrap_or(u32::MAX);
    let height = LEGEND_ROW
        .saturating_mul(rows.saturating_add(1))
        .saturating_add(h);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (w, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (plot, legend) = root.split_vertically(h);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", TITLE))
            .margin(MARGIN)
            // Room for the last x label, centred on the right edge.
            .margin_right(32)
            .x_label_area_size(40)
            .y_label_area_size(Y_LABELS)
            .build_cartesian_2d(
                log_axis(points().map(|p| p.0)).log_scale(),
                log_axis(points().map(|p| p.1)).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc(format!("{xlabel} (log)"))
            .y_desc("time (log)")
            .label_style(("sans-serif", TEXT))
            .axis_desc_style(("sans-serif", TEXT))
            .x_label_formatter(&|v| tick(*v, ""))
            .y_label_formatter(&|v| tick(*v, "s"))
            .draw()?;
        for ((name, pts), (row, colour)) in curves.iter().zip((0i32..).zip(COLOURS.iter().cycle()))
        {
            let line = colour.stroke_width(2);
            chart.draw_series(LineSeries::new(pts.iter().copied(), line))?;
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
            // Under the plot's left edge.
            let at = (
                (MARGIN + Y_LABELS) as i32,
                8 + row.saturating_mul(LEGEND_ROW as i32),
            );
            legend.draw(
                &(EmptyElement::at(at)
                    + PathElement::new(vec![(0, 0), (24, 0)], line)
                    + Text::new(name.clone(), (30, -7), ("sans-serif", TEXT))),
            )?;
        }
        root.present()?;
    }
    Ok(out)
}

/// The series group of migration timelines: `timeline NAME` (stages) and
/// `timeline NAME peers` (what the peers saw), each figure a segment from
/// x to x + value seconds.
const TIMELINE: &str = "timeline";

/// A stage of a timeline row: its name, start and end in seconds.
type Segment = (String, f64, f64);

/// Rows of segments (row name, its segments) of the timeline figures, in
/// the order the figures came.
fn timeline_rows(figs: &[Figure]) -> Vec<(String, Vec<Segment>)> {
    let mut rows: Vec<(String, Vec<Segment>)> = Vec::new();
    for f in figs {
        let (Some(series), Some(x)) = (&f.series, f.x) else {
            continue;
        };
        let Some(row) = series.strip_prefix("timeline ") else {
            continue;
        };
        if !(x.is_finite() && f.value.is_finite() && f.value > 0.0) {
            continue;
        }
        // timeline.<migration>.<stage_key>
        let stage = f
            .name
            .splitn(3, '.')
            .nth(2)
            .unwrap_or(&f.name)
            .replace('_', " ");
        match rows.iter_mut().find(|(r, _)| r == row) {
            Some((_, segs)) => segs.push((stage, x, x + f.value)),
            None => rows.push((row.to_string(), vec![(stage, x, x + f.value)])),
        }
    }
    rows
}

/// A chart of migration timelines: one bar per migration, a segment per
/// stage in one colour per stage, what the peers saw on a row of its own.
pub fn timeline_svg(figs: &[Figure]) -> Result<Option<String>> {
    let rows = timeline_rows(figs);
    if rows.is_empty() {
        return Ok(None);
    }
    let mut stages: Vec<&str> = Vec::new();
    for (_, segs) in &rows {
        for (s, _, _) in segs {
            if !stages.contains(&s.as_str()) {
                stages.push(s);
            }
        }
    }
    let end = rows
        .iter()
        .flat_map(|(_, s)| s.iter().map(|x| x.2))
        .fold(0.0, f64::max);
    let (w, h) = (
        PLOT.0 + 200,
        60 + 36 * u32::try_from(rows.len()).unwrap_or(u32::MAX),
    );
    let legend_rows = u32::try_from(stages.len()).unwrap_or(u32::MAX);
    let height = h.saturating_add(LEGEND_ROW.saturating_mul(legend_rows.saturating_add(1)));
    let palette = |i: usize| COLOURS[i % COLOURS.len()];
    let n = rows.len() as f64;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (w, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (plot, legend) = root.split_vertically(h);
        let mut chart = ChartBuilder::on(&plot)
            .caption("migration timeline", ("sans-serif", TITLE))
            .margin(MARGIN)
            .margin_right(32)
            .x_label_area_size(40)
            .y_label_area_size(Y_LABELS + 40)
            .build_cartesian_2d(0.0..end * 1.02, 0.0..n)?;
        let names: Vec<String> = rows.iter().map(|(r, _)| r.clone()).collect();
        chart
            .configure_mesh()
            .x_desc("seconds from the start of criu dump")
            .label_style(("sans-serif", TEXT))
            .axis_desc_style(("sans-serif", TEXT))
            .disable_y_mesh()
            .y_labels(rows.len() * 2 + 1)
            .y_label_formatter(&|v| {
                // Row i is drawn between n-i-1 and n-i: its label at the middle.
                let i = (n - v - 0.5).round();
                if (n - v - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_label_formatter(&|v| tick(*v, ""))
            .draw()?;
        for (i, (_, segs)) in rows.iter().enumerate() {
            let top = n - i as f64 - 0.15;
            let bottom = n - i as f64 - 0.85;
            chart.draw_series(segs.iter().map(|(s, a, b)| {
                let c = palette(stages.iter().position(|x| x == s).unwrap_or(0));
                Rectangle::new([(*a, bottom), (*b, top)], c.filled())
            }))?;
        }
        for (row, s) in (0i32..).zip(&stages) {
            let at = (
                (MARGIN + Y_LABELS) as i32,
                8 + row.saturating_mul(LEGEND_ROW as i32),
            );
            let c = palette(usize::try_from(row).unwrap_or(0));
            legend.draw(
                &(EmptyElement::at(at)
                    + Rectangle::new([(0, -5), (24, 5)], c.filled())
                    + Text::new(s.to_string(), (30, -7), ("sans-serif", TEXT))),
            )?;
        }
        root.present()?;
    }
    Ok(Some(out))
}

/// What the x axis of a group counts.
fn xlabel(group: &str) -> &'static str {
    match group {
        "sctp" => "associations",
        "tcp" => "connections",
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
        let plot = svg(&title, xlabel(&group), &curves)
            .with_context(|| format!("plotting {group}-scaling.svg"))?;
        put(format!("{group}-scaling.svg"), plot)?;
    }
    if let Some(plot) = timeline_svg(figs).context("plotting timeline.svg")? {
        put("timeline.svg".into(), plot)?;
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use epcmig_figures::Better;

    fn fig(name: &str, value: f64, series: Option<(&str, f64)>) -> Figure {
        let f = Figure::secs(name, value).against(2.0, "a | b");
        match series {
            Some((s, x)) => f.at(s, x),
            None => f,
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
            l(r#"epcmig-figure: {"name":"migration.messages_checked","unit":"msgs","value":30.0,"baseline":10.0,"baseline_is":"TCP","better":"higher","ratio":3.0}"#),
        ])
        .unwrap();
        assert_eq!(figs.len(), 3);
        assert_eq!(figs[0].x, Some(1000.0));
        assert_eq!(figs[1].series, None);
        // Lines from before `baseline_is` and `better`: unnamed, lower.
        assert_eq!(
            (&figs[1].baseline_is, figs[1].better),
            (&None, Better::Lower)
        );
        assert_eq!(figs[2].baseline_is.as_deref(), Some("TCP"));
        assert_eq!(figs[2].better, Better::Higher);
        assert!(parse(&[l("epcmig-figure: {not json")]).is_err());
        assert!(parse(&[l(r#"epcmig-figure: {"name":"x","unit":"s","value":1.0,"baseline":null,"ratio":null,"better":"sideways"}"#)]).is_err());
    }

    #[test]
    fn tables_say_what_each_baseline_is_and_which_way_is_better() {
        let checked = Figure::amount("migration.messages_checked", "msgs", 30.0)
            .against(10.0, "TCP echo container")
            .higher_is_better();
        let md = table(
            &[
                fig("migration.total", 1.0, None),
                fig("x.y", 3.0, None),
                checked,
                Figure::secs("no.baseline", 0.0004),
            ],
            "6.12-test",
        );
        assert!(md.contains("Measured on kernel `6.12-test`."), "{md}");
        assert!(
            md.contains("| migration time (total) | 1 s | 2 s | lower | 2.00x |"),
            "{md}"
        );
        assert!(
            md.contains("| messages checked by the peers | 30 msgs | 10 msgs | higher | 3.00x |"),
            "{md}"
        );
        assert!(
            md.contains("The baseline: TCP echo container; a | b."),
            "{md}"
        );
        assert!(md.contains("| figure | value | baseline | baseline is | better | ratio |"));
        assert!(
            md.contains("| x.y | 3 s | 2 s | a \\| b | lower | 0.67x |"),
            "{md}"
        );
        assert!(
            md.contains("| migration.messages_checked | 30 msgs | 10 msgs | TCP echo container | higher | 3.00x |"),
            "{md}"
        );
        assert!(
            md.contains("| no.baseline | 400.000 us | - | - | lower | - |"),
            "{md}"
        );
        assert!(md.contains("Above 1 the figure beats its baseline"), "{md}");
    }

    #[test]
    fn axis_labels_drop_padding_zeros() {
        assert_eq!(tick(0.001, "s"), "1 ms");
        assert_eq!(tick(0.5, "s"), "500 ms");
        assert_eq!(tick(10.0, "s"), "10 s");
        assert_eq!(tick(100000.0, ""), "100000");
        assert_eq!(decades([3.0, 450.0].into_iter()), 1.0..1000.0);
        assert_eq!(decades([5.0].into_iter()), 1.0..10.0);
    }

    #[test]
    fn plots_one_curve_per_series_on_log_axes() {
        let figs = [
            fig("sctp.capture_1", 0.001, Some(("sctp capture", 1.0))),
            fig("sctp.capture_1000", 0.9, Some(("sctp capture", 1000.0))),
            fig("sctp.restore_1", 0.002, Some(("sctp restore", 1.0))),
            fig("gtp.capture_1k", 0.1, Some(("gtp capture", 1000.0))),
            fig("gtp.capture_nan", f64::NAN, Some(("gtp capture", 10.0))),
            fig("not.plotted", 1.0, None),
        ];
        let g = groups(&figs);
        assert_eq!(g.keys().collect::<Vec<_>>(), ["gtp", "sctp"]);
        assert_eq!(g["sctp"]["sctp capture"], [(1.0, 0.001), (1000.0, 0.9)]);
        assert_eq!(g["gtp"]["gtp capture"], [(1000.0, 0.1)]);
        let s = svg("sctp: time", "associations", &g["sctp"]).unwrap();
        assert!(s.starts_with("<svg"), "{s}");
        // A line in its colour for each curve and its legend entry, a
        // circle a point.
        assert_eq!(
            s.matches(r##"stroke="#1F77B4" stroke-width="2""##).count(),
            2,
            "{s}"
        );
        assert_eq!(
            s.matches(r##"stroke="#D62728" stroke-width="2""##).count(),
            2,
            "{s}"
        );
        assert_eq!(s.matches("<circle").count(), 3, "{s}");
        // Each text element's words stand on a line of their own.
        for text in [
            "sctp capture",
            "sctp restore",
            "sctp: time",
            "associations (log)",
            "1000",
            "1 ms",
            "10 ms",
            "1 s",
        ] {
            assert!(s.contains(&format!("\n{text}\n")), "{text} not in {s}");
        }
        assert!(svg("empty", "count", &BTreeMap::new()).is_err());
    }

    #[test]
    fn timelines_are_drawn_as_bars_and_tabled_not_plotted_as_curves() {
        let figs = [
            fig("timeline.epc.dump_seize", 0.3, Some(("timeline epc", 6.0))),
            fig("timeline.epc.dump_memory", 1.5, Some(("timeline epc", 6.3))),
            fig(
                "timeline.epc.base_stations_without_an_echo",
                9.0,
                Some(("timeline epc peers", 6.2)),
            ),
            fig("timeline.tcp.dump_seize", 0.2, Some(("timeline tcp", 5.0))),
        ];
        assert!(groups(&figs).is_empty());
        let rows = timeline_rows(&figs);
        assert_eq!(
            rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            ["epc", "epc peers", "tcp"]
        );
        assert_eq!(rows[0].1[1], ("dump memory".to_string(), 6.3, 7.8));
        let svg = timeline_svg(&figs).unwrap().unwrap();
        assert!(svg.contains("<svg") && svg.contains("dump memory") && svg.contains("epc peers"));
        // One rectangle per segment at least (the legend has more).
        assert!(svg.matches("<rect").count() >= 4, "{svg}");
        let md = table(&figs, "t");
        assert!(md.contains("## Where the time goes"), "{md}");
        assert!(md.contains("| dump memory | 6.300 s | 1.500 s |"), "{md}");
        assert_eq!(timeline_svg(&figs[..0]).unwrap(), None);
    }

    #[test]
    fn writes_the_json_the_tables_and_a_plot_per_group() {
        let dir = std::env::temp_dir().join(format!("epcmig-report-{}", std::process::id()));
        let figs = [
            fig("sctp.capture_1", 0.001, Some(("sctp capture", 1.0))),
            fig("gtp.capture_1k", 0.1, Some(("gtp capture", 1000.0))),
        ];
        let files = write(&dir, "6.12-test", &figs).unwrap();
        let names: Vec<_> = files
            .iter()
            .filter_map(|p| p.file_name()?.to_str())
            .collect();
        assert_eq!(
            names,
            [
                "bench.json",
                "bench.md",
                "gtp-scaling.svg",
                "sctp-scaling.svg"
            ]
        );
        let plot = fs::read_to_string(dir.join("gtp-scaling.svg")).unwrap();
        assert!(
            plot.contains("<svg") && plot.contains("gtp capture"),
            "{plot}"
        );
        let json = fs::read_to_string(dir.join("bench.json")).unwrap();
        assert_eq!(serde_json::from_str::<Vec<Figure>>(&json).unwrap(), figs);
        fs::remove_dir_all(&dir).unwrap();
    }
}
