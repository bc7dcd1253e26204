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
}

impl Figure {
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
    ("baseline_tcp", crate::suites::baseline::bench),
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
