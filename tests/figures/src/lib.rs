//! One benchmark figure: the guest (`epcmig-guest bench`) prints each as a
//! line of JSON after [`PREFIX`] on its stdout; the host (`cargo vm bench`)
//! picks those lines out of the console and writes its report from them.

use serde::{Deserialize, Serialize};

/// Prefix of the machine-readable line for each figure.
pub const PREFIX: &str = "epcmig-figure: ";

/// Which way a figure improves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Times and sizes; also what a line from before `better` existed means.
    #[default]
    Lower,
    Higher,
}

impl Better {
    pub fn as_str(self) -> &'static str {
        match self {
            Better::Lower => "lower",
            Better::Higher => "higher",
        }
    }
}

impl std::fmt::Display for Better {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    pub value: f64,
    /// The same quantity for the baseline, measured in the same run.
    pub baseline: Option<f64>,
    /// What the baseline is ("TCP_REPAIR, as many connections, same
    /// round", "linear from 1 association", "a round trip on the same
    /// association"): the word alone means something else in each suite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_is: Option<String>,
    /// Which way `value` improves.
    #[serde(default)]
    pub better: Better,
    /// How many times better than the baseline `value` is, whichever way
    /// `better` points: baseline / value when lower is better, value /
    /// baseline when higher is; above 1 the value beats the baseline.
    /// `None` without a baseline, or when the divisor is not positive.
    pub ratio: Option<f64>,
    /// A point of a scaling curve: the curve's name and its x (e.g.
    /// "sctp.capture" at 1000 associations), for the report's plots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<f64>,
}

impl Figure {
    /// A time in seconds (lower is better).
    pub fn secs(name: impl Into<String>, value: f64) -> Figure {
        Figure::amount(name, "s", value)
    }

    /// A size or count in `unit` (lower is better unless
    /// [`Figure::higher_is_better`]).
    pub fn amount(name: impl Into<String>, unit: &str, value: f64) -> Figure {
        Figure {
            name: name.into(),
            unit: unit.into(),
            value,
            baseline: None,
            baseline_is: None,
            better: Better::Lower,
            ratio: None,
            series: None,
            x: None,
        }
    }

    /// Sets the baseline, `baseline` in this figure's unit, and what it
    /// is (`what`): the two go together, so no baseline goes unnamed.
    pub fn against(mut self, baseline: f64, what: &str) -> Figure {
        self.baseline = Some(baseline);
        self.baseline_is = Some(what.into());
        self.rated()
    }

    /// Marks the figure as one that improves upwards (a count of work
    /// done, not a cost).
    pub fn higher_is_better(mut self) -> Figure {
        self.better = Better::Higher;
        self.rated()
    }

    /// The figure with its ratio worked out again, after a change of
    /// baseline or direction.
    fn rated(mut self) -> Figure {
        self.ratio = self
            .baseline
            .and_then(|b| times_better(self.value, b, self.better));
        self
    }

    /// Marks the figure as the point at `x` of curve `series`.
    pub fn at(mut self, series: &str, x: f64) -> Figure {
        self.series = Some(series.into());
        self.x = Some(x);
        self
    }

    /// `v`, a quantity in this figure's unit, for people: a time below a
    /// second in ms, us or ns (a capture of 0.0004 s reads "0.400 ms",
    /// not "0.000 s"), whole counts without decimals.
    pub fn show(&self, v: f64) -> String {
        show(v, &self.unit)
    }

    /// The machine-readable line: [`PREFIX`] and the figure as JSON.
    pub fn to_line(&self) -> Result<String, serde_json::Error> {
        Ok(format!("{PREFIX}{}", serde_json::to_string(self)?))
    }

    /// The figure of a line [`Figure::to_line`] made; `None` if the line
    /// is not a figure line, an error if it is one that does not parse.
    pub fn from_line(line: &str) -> Option<Result<Figure, serde_json::Error>> {
        line.strip_prefix(PREFIX).map(serde_json::from_str)
    }
}

/// [`Figure::ratio`] of `value` against `baseline`.
fn times_better(value: f64, baseline: f64, better: Better) -> Option<f64> {
    let (num, den) = match better {
        Better::Lower => (baseline, value),
        Better::Higher => (value, baseline),
    };
    (den > 0.0).then(|| num / den)
}

/// [`Figure::show`] for a quantity `v` in `unit`.
pub fn show(v: f64, unit: &str) -> String {
    if unit == "s" && v != 0.0 && v.abs() < 1.0 {
        let (v, unit) = if v.abs() >= 1e-3 {
            (v * 1e3, "ms")
        } else if v.abs() >= 1e-6 {
            (v * 1e6, "us")
        } else {
            (v * 1e9, "ns")
        };
        return format!("{v:.3} {unit}");
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0} {unit}")
    } else if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        format!("{v:.3e} {unit}")
    } else {
        format!("{v:.3} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_times_are_shown_in_a_unit_that_shows_them() {
        assert_eq!(show(2.5, "s"), "2.500 s");
        assert_eq!(show(0.0004, "s"), "400.000 us");
        assert_eq!(show(0.0123, "s"), "12.300 ms");
        assert_eq!(show(3e-8, "s"), "30.000 ns");
        assert_eq!(show(0.0, "s"), "0 s");
        assert_eq!(show(1611651.0, "B"), "1611651 B");
        assert_eq!(show(0.5, "x"), "0.500 x");
    }

    #[test]
    fn a_figure_line_reads_back_as_printed() {
        let f = Figure::secs("sctp.restore", 0.5)
            .against(0.25, "a round trip")
            .at("sctp.restore", 1000.0);
        assert_eq!(f.ratio, Some(0.5));
        let line = f.to_line().unwrap();
        assert!(line.starts_with(PREFIX));
        assert!(line.contains(r#""baseline_is":"a round trip","better":"lower""#));
        assert_eq!(Figure::from_line(&line).unwrap().unwrap(), f);
        assert!(Figure::from_line("  sctp.restore 0.5 s").is_none());
        assert!(Figure::from_line("epcmig-figure: {\"name\":")
            .unwrap()
            .is_err());
    }

    #[test]
    fn a_line_from_before_baseline_is_and_better_still_reads() {
        let old = r#"epcmig-figure: {"name":"migration.total","unit":"s","value":3.0,"baseline":6.0,"ratio":2.0}"#;
        let f = Figure::from_line(old).unwrap().unwrap();
        assert_eq!(
            (f.baseline_is, f.better, f.ratio),
            (None, Better::Lower, Some(2.0))
        );
    }

    #[test]
    fn a_ratio_above_one_is_better_whichever_way_better_points() {
        let t = |v, b| Figure::secs("t", v).against(b, "b").ratio;
        assert_eq!(t(2.0, 1.0), Some(0.5));
        assert_eq!(t(1.0, 2.0), Some(2.0));
        let size = Figure::amount("m", "B", 2.0).against(1.0, "b");
        assert_eq!((size.better, size.ratio), (Better::Lower, Some(0.5)));
        let count = |v, b| {
            Figure::amount("n", "msgs", v)
                .against(b, "b")
                .higher_is_better()
        };
        assert_eq!(count(2.0, 1.0).ratio, Some(2.0));
        // The direction may come first: the ratio follows either order.
        let first = Figure::amount("n", "msgs", 2.0)
            .higher_is_better()
            .against(1.0, "b");
        assert_eq!(first, count(2.0, 1.0));
        assert_eq!(Figure::amount("m", "B", 2.0).ratio, None);
        assert_eq!(t(0.0, 1.0), None);
        assert_eq!(
            serde_json::to_string(&Better::Higher).unwrap(),
            r#""higher""#
        );
    }
}
