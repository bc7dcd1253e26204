//! Benchmarks: figures printed with the baseline measured in the same run.

use anyhow::{bail, Result};

pub use epcmig_figures::Figure;

/// Prints a figure for people, then its line for `cargo vm bench`.
fn print(f: &Figure) {
    let extra = match (f.baseline, f.ratio) {
        (Some(b), Some(r)) => format!(
            "  (against {}: {}, ratio {r:.2}x; the {} the better)",
            f.baseline_is.as_deref().unwrap_or("unnamed"),
            f.show(b),
            f.better
        ),
        _ => String::new(),
    };
    println!("  {:<40} {:>16}{extra}", f.name, f.show(f.value));
    if let Ok(l) = f.to_line() {
        println!("{l}");
    }
}

/// The median of `values` (the upper one of an even count): what the
/// benchmarks report of several rounds, TCG's timing being noisy.
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

type BenchFn = fn() -> Result<Vec<Figure>>;

const BENCHES: &[(&str, BenchFn)] = &[
    ("migration", crate::suites::baseline::bench),
    ("sctp", crate::suites::sctp_repair::bench),
    (
        "sctp-one-to-many",
        crate::suites::sctp_repair::bench_one_to_many,
    ),
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
            print(&fig);
        }
    }
    Ok(0)
}
