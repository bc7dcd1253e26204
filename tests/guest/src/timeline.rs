//! Where a migration's time goes: its stages, read from CRIU's logs (CRIU
//! stamps every line with the time since it started, the plugin's lines
//! included) and from what the test itself timed (the image transfer, the
//! gratuitous ARP, the peers' first traffic after the move), on one clock
//! that starts with `criu dump`.

use std::time::{Duration, Instant};

use epcmig_figures::Figure;

/// One stage: `[start, end)` in seconds from the start of the dump.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub stage: String,
    pub start: f64,
    pub end: f64,
}

/// The stages of one migration, in order.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Which migration (`epc`, `tcp`...), for the figures' names.
    pub name: String,
    t0: Option<Instant>,
    pub spans: Vec<Span>,
    /// Moments worth a mark but no stage (the peers' downtime, say).
    pub marks: Vec<Span>,
}

/// What starts a stage of `criu dump`, in the order CRIU logs them: the
/// stage runs until the next one found starts. A marker CRIU does not log
/// (no plugin, no netns of its own) leaves its stage out.
const DUMP: &[(&str, &str)] = &[
    ("dump: criu start-up (kernel probe, plugins)", ""),
    (
        "dump: seize and freeze the tree",
        "Preparing image inventory",
    ),
    ("dump: epcmig, gtp devices and netns settings", "hook 11 ->"),
    ("dump: network lock, mounts", "Lock network"),
    ("dump: task (files, sockets)", "Dumping task (pid"),
    ("dump: epcmig, SCTP freeze and read-out", "' hook 2 ->"),
    ("dump: memory", "Dumping pages"),
    (
        "dump: netns (links, routes, rules, iptables)",
        "Dump NET namespace info",
    ),
    ("dump: images, unfreeze", "Writing image inventory"),
];
const DUMP_END: &str = "Dumping finished successfully";

/// The same for `criu restore`.
const RESTORE: &[(&str, &str)] = &[
    ("restore: criu start-up (kernel probe, plugins)", ""),
    ("restore: pre-restore script", "Running pre-restore scripts"),
    (
        "restore: setup-namespaces script (gtp)",
        "Running setup-namespaces scripts",
    ),
    (
        "restore: netns (links, addresses, routes, iptables)",
        "Restoring namespaces",
    ),
    (
        "restore: post-setup-namespaces script",
        "Running post-setup-namespaces scripts",
    ),
    (
        "restore: files, sockets (epcmig: SCTP), memory",
        "Preparing info about shared resources",
    ),
    ("restore: tasks back in their code", "Restore via sigreturn"),
    (
        "restore: post-restore script",
        "Running post-restore scripts",
    ),
    ("restore: network unlock", "Unlock network"),
    (
        "restore: epcmig, gtp install and SCTP thaw",
        "Run late stage hook",
    ),
    (
        "restore: pre-resume script, resume",
        "Running pre-resume scripts",
    ),
];
const RESTORE_END: &str = "Restore finished successfully";

/// The lines of a CRIU log with their times: `(00.123456) text`.
fn stamped(log: &str) -> impl Iterator<Item = (f64, &str)> {
    log.lines().filter_map(|l| {
        let rest = l.strip_prefix('(')?;
        let (t, text) = rest.split_once(')')?;
        Some((t.trim().parse().ok()?, text))
    })
}

/// The stages `table` finds in `log`, ending at the line with `end` (or
/// the last line), shifted by `offset` seconds.
fn stages(log: &str, table: &[(&str, &str)], end: &str, offset: f64) -> Vec<Span> {
    let lines: Vec<(f64, &str)> = stamped(log).collect();
    let Some(&(first, _)) = lines.first() else {
        return Vec::new();
    };
    let stop = lines
        .iter()
        .find(|(_, l)| l.contains(end))
        .or(lines.last())
        .map_or(first, |&(t, _)| t);
    // Each marker's first line, searched after the one before it.
    let mut starts: Vec<(&str, f64)> = Vec::new();
    let mut from = 0;
    for (stage, marker) in table {
        if marker.is_empty() {
            starts.push((stage, 0.0));
            continue;
        }
        if let Some(i) = lines[from..].iter().position(|(_, l)| l.contains(marker)) {
            starts.push((stage, lines[from + i].0));
            from += i;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(i, &(stage, s))| Span {
            stage: stage.to_string(),
            start: offset + s,
            end: offset + starts.get(i + 1).map_or(stop, |n| n.1),
        })
        .filter(|s| s.end > s.start)
        .collect()
}

impl Timeline {
    /// A timeline whose clock starts at `t0`, when `criu dump` started.
    pub fn new(name: &str, t0: Instant) -> Timeline {
        Timeline {
            name: name.to_string(),
            t0: Some(t0),
            ..Default::default()
        }
    }

    fn at(&self, t: Instant) -> f64 {
        self.t0
            .map_or(0.0, |t0| t.saturating_duration_since(t0).as_secs_f64())
    }

    /// The stages of `criu dump` from its log (the dump started at `t0`
    /// and took `took`), and its exit after the last line.
    pub fn dump_log(&mut self, log: &str, took: Duration) {
        self.dump_log_from(log, 0.0, took);
    }

    /// [`Self::dump_log`] for a dump that started at `started`, not at
    /// the start of the clock (a pre-copy's final dump, after its
    /// pre-dump rounds).
    pub fn dump_log_at(&mut self, log: &str, started: Instant, took: Duration) {
        self.dump_log_from(log, self.at(started), took);
    }

    fn dump_log_from(&mut self, log: &str, off: f64, took: Duration) {
        let exit = "dump: criu exits (plugins' end)";
        self.criu_log(log, DUMP, DUMP_END, off, took, exit);
    }

    /// The stages of `criu restore` from its log, `criu restore` having
    /// started at `started` and taken `took`.
    pub fn restore_log(&mut self, log: &str, started: Instant, took: Duration) {
        let off = self.at(started);
        let exit = "restore: criu exits (plugins' end)";
        self.criu_log(log, RESTORE, RESTORE_END, off, took, exit);
    }

    fn criu_log(
        &mut self,
        log: &str,
        table: &[(&str, &str)],
        end: &str,
        off: f64,
        took: Duration,
        exit: &str,
    ) {
        let found = stages(log, table, end, off);
        let last = found.last().map_or(off, |s| s.end);
        self.spans.extend(found);
        if off + took.as_secs_f64() > last {
            self.spans.push(Span {
                stage: exit.to_string(),
                start: last,
                end: off + took.as_secs_f64(),
            });
        }
    }

    /// A stage the test timed itself.
    pub fn span(&mut self, stage: &str, from: Instant, to: Instant) {
        let (start, end) = (self.at(from), self.at(to));
        if end > start {
            self.spans.push(Span {
                stage: stage.to_string(),
                start,
                end,
            });
        }
    }

    /// A moment of interest spanning `from..to` drawn beside the stages.
    pub fn mark(&mut self, what: &str, from: Instant, to: Instant) {
        self.marks.push(Span {
            stage: what.to_string(),
            start: self.at(from),
            end: self.at(to),
        });
    }

    /// The seconds from the start of the dump at which a stage whose name
    /// contains `what` starts.
    pub fn start_of(&self, what: &str) -> Option<f64> {
        self.spans
            .iter()
            .find(|s| s.stage.contains(what))
            .map(|s| s.start)
    }

    /// Seconds spent in the stages whose names contain `what`.
    pub fn total(&self, what: &str) -> f64 {
        self.spans
            .iter()
            .filter(|s| s.stage.contains(what))
            .map(|s| s.end - s.start)
            .sum()
    }

    /// Where the frozen time went, in one line: from the freeze to the end
    /// of the restore, the shares of the plugin, the action scripts and
    /// CRIU's start-up on the destination.
    pub fn summary(&self) -> String {
        let from = self.start_of("seize").unwrap_or(0.0);
        // Resumed where CRIU says so, not when it exits.
        let to = self
            .spans
            .iter()
            .filter(|s| s.stage.starts_with("restore:") && !s.stage.contains("criu exits"))
            .map(|s| s.end)
            .fold(from, f64::max);
        let dump: f64 = self
            .spans
            .iter()
            .filter(|s| s.stage.starts_with("dump:") && s.start >= from)
            .map(|s| s.end - s.start)
            .sum();
        format!(
            "frozen {:.3} s (tree seized to tasks resumed): dump {dump:.3} s after the freeze, \
             transfer {:.3} s, restore {:.3} s; of it the epcmig plugin {:.3} s, CRIU's action \
             scripts {:.3} s, CRIU's start-up on B {:.3} s",
            to - from,
            self.total("transfer") + self.total("removed"),
            to - self.start_of("restore:").unwrap_or(to),
            self.total("epcmig"),
            self.total("script"),
            self.total("restore: criu start-up"),
        )
    }

    /// The timeline as a table: start, duration and a bar per stage.
    pub fn print(&self, title: &str) {
        let end = self
            .spans
            .iter()
            .chain(&self.marks)
            .map(|s| s.end)
            .fold(0.0, f64::max);
        println!("  timeline of {title} (seconds from the start of criu dump):");
        println!("    {:>7} {:>7}  stage", "start", "took");
        let bar = |s: &Span| {
            const W: f64 = 40.0;
            let scale = if end > 0.0 { W / end } else { 0.0 };
            let a = (s.start * scale).round() as usize;
            let b = ((s.end * scale).round() as usize).max(a + 1);
            format!("{}{}", " ".repeat(a), "#".repeat(b - a))
        };
        for s in &self.spans {
            println!(
                "    {:>7.3} {:>7.3}  {:<52} |{}",
                s.start,
                s.end - s.start,
                s.stage,
                bar(s)
            );
        }
        for s in &self.marks {
            println!(
                "    {:>7.3} {:>7.3}  {:<52} |{}",
                s.start,
                s.end - s.start,
                format!("[{}]", s.stage),
                bar(s).replace('#', "=")
            );
        }
    }

    /// One figure per stage (series `timeline <name>`, x its start) for
    /// the bench report's timeline chart.
    pub fn figures(&self) -> Vec<Figure> {
        let key = |s: &str| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
                .split('_')
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join("_")
        };
        let stages = self
            .spans
            .iter()
            .map(|s| (s, format!("timeline {}", self.name)));
        let marks = self
            .marks
            .iter()
            .map(|s| (s, format!("timeline {} peers", self.name)));
        stages
            .chain(marks)
            .map(|(s, series)| {
                Figure::secs(
                    format!("timeline.{}.{}", self.name, key(&s.stage)),
                    s.end - s.start,
                )
                .at(&series, s.start)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP_LOG: &str = "(00.000000) CRIU run id = x\n\
        (04.075618) ========================================\n\
        (06.146009) Preparing image inventory (version 1)\n\
        (06.364360) Seized task 132, state 1\n\
        (06.691767) plugin: `epcmig' hook 11 -> 0x7ff0bcb6e540\n\
        (10.105178) net: Lock network\n\
        (10.923612) Dumping task (pid: 132 comm: epcmig-guest)\n\
        (11.431335) plugin: `epcmig' hook 2 -> 0x7ff0bcb6e210\n\
        (11.669224) plugin: `epcmig' hook 2 -> 0x7ff0bcb6e210\n\
        (11.769808) Dumping pages (type: 59 pid: 132)\n\
        (12.057270) Dump NET namespace info 9 via 132\n\
        (14.887547) Writing image inventory (version 1)\n\
        (14.935278) Dumping finished successfully\n";

    #[test]
    fn dump_stages_follow_the_log() {
        let mut t = Timeline::new("epc", Instant::now());
        t.dump_log(DUMP_LOG, Duration::ZERO);
        let names: Vec<&str> = t.spans.iter().map(|s| s.stage.as_str()).collect();
        assert_eq!(names.len(), DUMP.len(), "{names:?}");
        assert!((t.total("epcmig, gtp") - (10.105178 - 6.691767)).abs() < 1e-9);
        assert!((t.spans[8].end - 14.935278).abs() < 1e-9);
        // Consecutive, no gaps.
        for w in t.spans.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
    }

    #[test]
    fn stages_without_their_marker_are_left_out() {
        // A TCP baseline: no plugin hooks.
        let log = DUMP_LOG
            .lines()
            .filter(|l| !l.contains("hook"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut t = Timeline::new("tcp", Instant::now());
        t.dump_log(&log, Duration::ZERO);
        assert!(t.spans.iter().all(|s| !s.stage.contains("epcmig")));
        assert_eq!(t.start_of("network lock"), Some(10.105178));
    }

    #[test]
    fn restore_stages_are_shifted_to_the_dump_clock() {
        let t0 = Instant::now();
        let mut t = Timeline::new("epc", t0);
        let log = "(00.000000) x\n(00.961570) Running pre-restore scripts\n\
                   (11.804311) Restore finished successfully. Tasks resumed.\n";
        t.restore_log(log, t0 + Duration::from_secs(20), Duration::from_secs(12));
        assert_eq!(t.spans.len(), 3, "{:?}", t.spans);
        assert!(
            (t.spans[2].end - 32.0).abs() < 1e-6,
            "criu's exit after its last line"
        );
        assert!((t.spans[1].start - 20.961570).abs() < 1e-6);
        assert!((t.spans[1].end - 31.804311).abs() < 1e-6);
    }

    #[test]
    fn figures_carry_series_and_start() {
        let mut t = Timeline::new("epc", Instant::now());
        t.dump_log(DUMP_LOG, Duration::ZERO);
        let f = t.figures();
        assert_eq!(f.len(), t.spans.len());
        assert_eq!(
            f[2].name,
            "timeline.epc.dump_epcmig_gtp_devices_and_netns_settings"
        );
        assert_eq!(f[2].series.as_deref(), Some("timeline epc"));
        assert_eq!(f[2].x, Some(6.691767));
    }
}
