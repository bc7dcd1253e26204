//! Benchmarks: figures printed with the baseline measured in the same run.

use anyhow::{bail, Result};
use serde::Serialize;

/// Prefix of the machine-readable line for each figure on stdout.
pub const JSON_PREFIX: &str = "epcmig-figure: ";

#[derive(Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    pub value: f64,
    /// The same quantity for the baseline, measured in the same run.
    pub baseline: Option<f64>,
    /// baseline / value for times (higher is better), else value/baseline.
    pub ratio: Option<f64>,
    /// A point of a scaling curve: the curve's name and its x (e.g.
    /// "sctp.capture" at 1000 associations), for `cargo vm bench`'s plots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<f64>,
}

impl Figure {
    /// A time in seconds, against a baseline time if there is one.
    pub fn secs(name: impl Into<String>, value: f64, baseline: Option<f64>) -> Figure {
        Figure {
            name: name.into(),
            unit: "s".into(),
            value,
            baseline,
            ratio: baseline.map(|b| if value > 0.0 { b / value } else { 0.0 }),
            series: None,
            x: None,
        }
    }

    /// A size or count, against a baseline one if there is one.
    pub fn amount(
        name: impl Into<String>,
        unit: &str,
        value: f64,
        baseline: Option<f64>,
    ) -> Figure {
        Figure {
            name: name.into(),
            unit: unit.into(),
            value,
            baseline,
            ratio: baseline.map(|b| if b > 0.0 { value / b } else { 0.0 }),
            series: None,
            x: None,
        }
    }

    /// Marks the figure as the point at `x` of curve `series`.
    pub fn at(mut self, series: &str, x: f64) -> Figure {
        self.series = Some(series.into());
        self.x = Some(x);
        self
    }

    pub fn print(&self) {
        let extra = match (self.baseline, self.ratio) {
            (Some(b), Some(r)) => format!("  (baseline {b:.3} {}, ratio {r:.2}x)", self.unit),
            _ => String::new(),
        };
        println!(
            "  {:<40} {:>12.3} {}{extra}",
            self.name, self.value, self.unit
        );
        if let Ok(j) = serde_json::to_string(self) {
            println!("{JSON_PREFIX}{j}");
        }
    }
}

type BenchFn = fn() -> Result<Vec<Figure>>;

const BENCHES: &[(&str, BenchFn)] = &[
    ("migration", crate::suites::baseline::bench),
    ("sctp", crate::suites::sctp_repair::bench),
    ("gtp", crate::suites::gtp::bench),
];

pub fn run(name: Option<&str>) -> Result<u8> {
    let chosen: Vec<_> = BENCHES
        .iter()
        .filter(|(n, _)| name.map_or(true, |f| n.contains(f)))
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = BENCHES.iter().map(|(n, _)| *n).collect();
        bail!(
            "no benchmark matches {:?}; benchmarks: {}",
            name.unwrap_or(""),
            names.join(", ")
        );
    }
    for (n, f) in chosen {
        println!("bench {n}:");
        for fig in f()? {
            fig.print();
        }
    }
    Ok(0)
}
