//! One benchmark figure: the guest (`epcmig-guest bench`) prints each as a
//! line of JSON after [`PREFIX`] on its stdout; the host (`cargo vm bench`)
//! picks those lines out of the console and writes its report from them.

use serde::{Deserialize, Serialize};

/// Prefix of the machine-readable line for each figure.
pub const PREFIX: &str = "epcmig-figure: ";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    pub value: f64,
    /// The same quantity for the baseline, measured in the same run.
    pub baseline: Option<f64>,
    /// baseline / value for times (higher is better), else value/baseline.
    pub ratio: Option<f64>,
    /// A point of a scaling curve: the curve's name and its x (e.g.
    /// "sctp.capture" at 1000 associations), for the report's plots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
        let f = Figure::secs("sctp.restore", 0.5, Some(0.25)).at("sctp.restore", 1000.0);
        assert_eq!(f.ratio, Some(0.5));
        let line = f.to_line().unwrap();
        assert!(line.starts_with(PREFIX));
        assert_eq!(Figure::from_line(&line).unwrap().unwrap(), f);
        assert!(Figure::from_line("  sctp.restore 0.5 s").is_none());
        assert!(Figure::from_line("epcmig-figure: {\"name\":")
            .unwrap()
            .is_err());
    }

    #[test]
    fn ratios_are_better_when_higher_for_times_only() {
        assert_eq!(Figure::secs("t", 2.0, Some(1.0)).ratio, Some(0.5));
        assert_eq!(Figure::amount("m", "B", 2.0, Some(1.0)).ratio, Some(2.0));
        assert_eq!(Figure::amount("m", "B", 2.0, None).ratio, None);
    }
}
