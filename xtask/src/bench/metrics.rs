//! The figures the gate looks at: for each case, which numbers of the load generator's results matter, which
//! way is better, the goal, and the hub-to-reference ratio.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::micro::Micro;

/// Which way a figure improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Better {
    /// Throughput.
    Higher,
    /// Latency, memory, time.
    Lower,
}

/// What the baseline comparison looks at for a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// The hub-to-reference ratio (noise on a shared machine cancels out).
    Ratio,
    /// The hub's own figure (micro-benches, which have no reference).
    Hub,
    /// Reported only.
    Report,
}

/// The goal for a figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Goal {
    /// hub/ref at least this.
    RatioAtLeast(f64),
    /// hub/ref at most this.
    RatioAtMost(f64),
    /// The hub's figure at least this.
    HubAtLeast(f64),
    /// The hub's figure at most this.
    HubAtMost(f64),
    /// hub - ref at most this (latency added over the reference).
    AddedAtMost(f64),
    /// hub/bun at least this (throughput against uWebSockets inside Bun, in the same run).
    BunRatioAtLeast(f64),
    /// hub/bun at most this (latency against Bun).
    BunRatioAtMost(f64),
}

impl Goal {
    /// Whether `row` meets the goal; `None` when a figure is missing.
    pub(crate) fn met(self, row: &Row) -> Option<bool> {
        match self {
            Self::RatioAtLeast(x) => row.ratio.map(|r| r >= x),
            Self::RatioAtMost(x) => row.ratio.map(|r| r <= x),
            Self::HubAtLeast(x) => row.hub().map(|v| v >= x),
            Self::HubAtMost(x) => row.hub().map(|v| v <= x),
            Self::AddedAtMost(x) => Some(row.hub()? - row.figures.get("ref")?.median <= x),
            Self::BunRatioAtLeast(x) => Some(row.hub()? / row.figures.get("bun")?.median >= x),
            Self::BunRatioAtMost(x) => Some(row.hub()? / row.figures.get("bun")?.median <= x),
        }
    }
}

impl std::fmt::Display for Goal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RatioAtLeast(x) => write!(f, "ratio >= {x}"),
            Self::RatioAtMost(x) => write!(f, "ratio <= {x}"),
            Self::HubAtLeast(x) => write!(f, ">= {}", super::report::human(*x)),
            Self::HubAtMost(x) => write!(f, "<= {}", super::report::human(*x)),
            Self::AddedAtMost(x) => write!(f, "hub - ref <= {}", super::report::human(*x)),
            Self::BunRatioAtLeast(x) => write!(f, "hub/bun >= {x}"),
            Self::BunRatioAtMost(x) => write!(f, "hub/bun <= {x}"),
        }
    }
}

/// One target's figure in a row.
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    /// The median over the samples.
    pub(crate) median: f64,
    /// The smallest and largest sample.
    pub(crate) spread: (f64, f64),
    /// Server and load-generator CPU, median percent of one core, when measured.
    pub(crate) cpu: Option<(f64, f64)>,
}

/// One figure of one case, for every target.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// `scenario/case/metric`, the baseline's key.
    pub(crate) key: String,
    /// The scenario.
    pub(crate) scenario: String,
    /// The case.
    pub(crate) case: String,
    /// What the figure is.
    pub(crate) label: &'static str,
    /// Which way is better.
    pub(crate) better: Better,
    /// What the baseline compares.
    pub(crate) gate: Gate,
    /// The goal.
    pub(crate) goal: Option<Goal>,
    /// By target name.
    pub(crate) figures: BTreeMap<String, Figure>,
    /// hub / ref.
    pub(crate) ratio: Option<f64>,
}

impl Row {
    /// The hub's median.
    pub(crate) fn hub(&self) -> Option<f64> {
        self.figures.get("hub").map(|f| f.median)
    }

    /// The figure the gate compares with the baseline.
    pub(crate) fn gated(&self) -> Option<f64> {
        match self.gate {
            Gate::Ratio => self.ratio,
            Gate::Hub => self.hub(),
            Gate::Report => None,
        }
    }

    /// The row as JSON for the report.
    pub(crate) fn to_json(&self) -> Value {
        let figures: BTreeMap<&String, Value> = self
            .figures
            .iter()
            .map(|(target, f)| {
                let cpu = f.cpu.map(|(server, loadgen)| json!({"server_pct": server, "loadgen_pct": loadgen}));
                (target, json!({"median": f.median, "min": f.spread.0, "max": f.spread.1, "cpu": cpu}))
            })
            .collect();
        json!({
            "key": self.key,
            "label": self.label,
            "better": match self.better { Better::Higher => "higher", Better::Lower => "lower" },
            "ratio_hub_to_ref": self.ratio,
            "goal": self.goal.map(|g| g.to_string()),
            "goal_met": self.goal.and_then(|g| g.met(self)),
            "figures": figures,
        })
    }
}

/// Where a spec's figure is in a case result.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// `summary[name]`: median and spread over the samples.
    Summary,
    /// `totals[name]`: one figure for the case.
    Totals,
}

struct Spec {
    scenario: &'static str,
    name: &'static str,
    source: Source,
    label: &'static str,
    better: Better,
    gate: Gate,
    goal: fn(&str) -> Option<Goal>,
}

const SPECS: &[Spec] = &[
    Spec {
        scenario: "echo",
        name: "rate",
        source: Source::Summary,
        label: "round trips/s",
        better: Better::Higher,
        gate: Gate::Ratio,
        goal: |_| Some(Goal::RatioAtLeast(0.95)),
    },
    Spec {
        scenario: "echo",
        name: "lat_p99_us",
        source: Source::Summary,
        label: "p99 round trip, µs",
        better: Better::Lower,
        gate: Gate::Report,
        goal: |_| None,
    },
    Spec {
        scenario: "room",
        name: "rate",
        source: Source::Summary,
        label: "deliveries/s",
        better: Better::Higher,
        gate: Gate::Ratio,
        goal: |_| Some(Goal::BunRatioAtLeast(1.0)),
    },
    Spec {
        scenario: "room_workers",
        name: "rate",
        source: Source::Summary,
        label: "deliveries/s, one worker per core, unpinned",
        better: Better::Higher,
        gate: Gate::Report,
        goal: |_| None,
    },
    Spec {
        scenario: "broadcast",
        name: "last_p99_us",
        source: Source::Summary,
        label: "p99 publish to last receipt, µs",
        better: Better::Lower,
        gate: Gate::Ratio,
        goal: |_| Some(Goal::BunRatioAtMost(1.0)),
    },
    Spec {
        scenario: "broadcast",
        name: "last_p999_us",
        source: Source::Summary,
        label: "p99.9 publish to last receipt, µs",
        better: Better::Lower,
        gate: Gate::Report,
        goal: |_| Some(Goal::BunRatioAtMost(1.0)),
    },
    Spec {
        scenario: "broadcast",
        name: "lat_p99_us",
        source: Source::Summary,
        label: "p99 publish to each receipt, µs",
        better: Better::Lower,
        gate: Gate::Report,
        goal: |_| None,
    },
    Spec {
        scenario: "idle",
        name: "rss_per_conn_bytes",
        source: Source::Summary,
        label: "server RSS per connection, bytes",
        better: Better::Lower,
        gate: Gate::Ratio,
        goal: |_| Some(Goal::RatioAtMost(1.1)),
    },
    Spec {
        scenario: "idle",
        name: "cpu_us_per_conn_s",
        source: Source::Totals,
        label: "server CPU per connection, µs/s",
        better: Better::Lower,
        gate: Gate::Report,
        goal: |_| Some(Goal::HubAtMost(1.0)),
    },
    Spec {
        scenario: "channels",
        name: "ops_per_server_cpu_s",
        source: Source::Summary,
        label: "deliveries per server CPU second",
        better: Better::Higher,
        gate: Gate::Ratio,
        goal: |_| Some(Goal::HubAtLeast(300_000.0)),
    },
    Spec {
        scenario: "channels",
        name: "rate",
        source: Source::Summary,
        label: "deliveries/s",
        better: Better::Higher,
        gate: Gate::Report,
        goal: |_| None,
    },
    Spec {
        scenario: "cluster",
        name: "rate",
        source: Source::Summary,
        label: "deliveries/s across two nodes (ref: Redis alone, pipelined PUBLISH)",
        better: Better::Higher,
        gate: Gate::Ratio,
        goal: |_| Some(Goal::RatioAtLeast(0.5)),
    },
    Spec {
        scenario: "cluster_latency",
        name: "lat_p99_us",
        source: Source::Summary,
        label: "p99 publish to receipt across two nodes, µs (ref: one node)",
        better: Better::Lower,
        gate: Gate::Report,
        goal: |_| Some(Goal::AddedAtMost(1000.0)),
    },
    Spec {
        scenario: "cluster_latency",
        name: "lat_p50_us",
        source: Source::Summary,
        label: "p50 publish to receipt across two nodes, µs (ref: one node)",
        better: Better::Lower,
        gate: Gate::Report,
        goal: |_| None,
    },
    Spec {
        scenario: "churn",
        name: "upgrades_per_s",
        source: Source::Totals,
        label: "upgrades/s with p99 <= 100 ms",
        better: Better::Higher,
        gate: Gate::Ratio,
        goal: |_| Some(Goal::RatioAtLeast(0.8)),
    },
    Spec {
        scenario: "churn",
        name: "rss_growth_pct",
        source: Source::Totals,
        label: "RSS growth, first wave to last, %",
        better: Better::Lower,
        gate: Gate::Report,
        goal: |_| None,
    },
];

fn figure(result: &Value, spec: &Spec) -> Option<Figure> {
    let cpu = {
        let s = &result["summary"];
        match (s["server_cpu_pct"]["median"].as_f64(), s["loadgen_cpu_pct"]["median"].as_f64()) {
            (Some(server), Some(loadgen)) => Some((server, loadgen)),
            _ => None,
        }
    };
    match spec.source {
        Source::Summary => {
            let stat = &result["summary"][spec.name];
            Some(Figure {
                median: stat["median"].as_f64()?,
                spread: (stat["min"].as_f64()?, stat["max"].as_f64()?),
                cpu,
            })
        }
        Source::Totals => {
            let value = result["totals"][spec.name].as_f64()?;
            Some(Figure { median: value, spread: (value, value), cpu })
        }
    }
}

/// The rows of a run: every spec'd figure of every case, then the micro-benches.
pub(crate) fn rows(results: &[Value], micro: &[Micro]) -> Vec<Row> {
    let mut cases: Vec<(String, String)> = Vec::new();
    for r in results {
        let id = (r["scenario"].as_str().unwrap_or("?").to_owned(), r["case"].as_str().unwrap_or("?").to_owned());
        if !cases.contains(&id) {
            cases.push(id);
        }
    }
    let mut rows = Vec::new();
    for (scenario, case) in &cases {
        for spec in SPECS.iter().filter(|s| s.scenario == scenario) {
            let figures: BTreeMap<String, Figure> = results
                .iter()
                .filter(|r| r["scenario"] == scenario.as_str() && r["case"] == case.as_str())
                .filter_map(|r| Some((r["target"].as_str()?.to_owned(), figure(r, spec)?)))
                .collect();
            let ratio = match (figures.get("hub"), figures.get("ref")) {
                (Some(hub), Some(reference)) if reference.median != 0.0 => Some(hub.median / reference.median),
                _ => None,
            };
            rows.push(Row {
                key: format!("{scenario}/{case}/{}", spec.name),
                scenario: scenario.clone(),
                case: case.clone(),
                label: spec.label,
                better: spec.better,
                gate: spec.gate,
                goal: (spec.goal)(case),
                figures,
                ratio,
            });
        }
    }
    for m in micro {
        let figure = Figure { median: m.ns, spread: (m.ns, m.ns), cpu: None };
        rows.push(Row {
            key: format!("core/{}/ns", m.id),
            scenario: "core".to_owned(),
            case: m.id.to_owned(),
            label: m.what,
            better: Better::Lower,
            gate: Gate::Hub,
            goal: m.id.starts_with("publish_one_channel").then_some(Goal::HubAtMost(50.0)),
            figures: BTreeMap::from([("hub".to_owned(), figure)]),
            ratio: None,
        });
    }
    rows
}

/// Whether a case's run was bound by the server (near 100 % CPU while the load generator was not), by the load
/// generator, by both (then the figure understates the server), or by neither (latency-bound, or idle by design).
pub(crate) fn bound(cpu: Option<(f64, f64)>) -> &'static str {
    match cpu {
        Some((server, loadgen)) if server >= 85.0 && loadgen >= 85.0 => "both",
        Some((_, loadgen)) if loadgen >= 85.0 => "loadgen",
        Some((server, _)) if server >= 85.0 => "server",
        Some(_) => "neither",
        None => "-",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(target: &str, rate: f64) -> Value {
        json!({
            "scenario": "echo", "case": "100x20B", "target": target, "ok": true,
            "summary": {
                "rate": {"median": rate, "min": rate - 1.0, "max": rate + 1.0},
                "server_cpu_pct": {"median": 99.0, "min": 98.0, "max": 100.0},
                "loadgen_cpu_pct": {"median": 40.0, "min": 38.0, "max": 41.0}
            },
            "totals": {}
        })
    }

    #[test]
    fn rows_pair_hub_and_reference_into_ratios() {
        let rows = rows(&[result("ref", 200.0), result("hub", 150.0)], &[]);
        let rate = rows.iter().find(|r| r.key == "echo/100x20B/rate").unwrap();
        assert_eq!(rate.ratio, Some(0.75));
        assert_eq!(rate.goal.unwrap().met(rate), Some(false));
        assert_eq!(bound(rate.figures["hub"].cpu), "server");
    }
}
