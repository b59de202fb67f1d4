//! The run's report: a table on stdout, and `target/bench/report.json` and `report.md`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use super::baseline::Verdict;
use super::metrics::{self, Row};

/// A number for people: 3.52M, 136k, 0.95, 12.3.
pub(crate) fn human(value: f64) -> String {
    let abs = value.abs();
    if !value.is_finite() {
        format!("{value}")
    } else if abs >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if abs >= 1e4 {
        format!("{:.0}k", value / 1e3)
    } else if abs >= 100.0 {
        format!("{value:.0}")
    } else if abs >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn figure(row: &Row, target: &str) -> String {
    row.figures.get(target).map_or_else(|| "-".to_owned(), |f| human(f.median))
}

fn cpu(row: &Row, target: &str) -> String {
    match row.figures.get(target).and_then(|f| f.cpu) {
        Some((server, loadgen)) => format!("{server:.0}/{loadgen:.0}"),
        None => "-".to_owned(),
    }
}

fn verdict_text(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Pass { baseline } => format!("ok (base {})", human(*baseline)),
        Verdict::Regressed { baseline, tolerance } => {
            format!("REGRESSED (base {}, tol {:.0}%)", human(*baseline), tolerance * 100.0)
        }
        Verdict::New => "new".to_owned(),
        Verdict::NotGated => "-".to_owned(),
    }
}

fn goal_text(row: &Row) -> String {
    match row.goal {
        Some(goal) => match goal.met(row) {
            Some(true) => format!("{goal}: met"),
            Some(false) => format!("{goal}: NOT met"),
            None => format!("{goal}: ?"),
        },
        None => "-".to_owned(),
    }
}

/// The table's cells, one vector per row, header first.
fn cells(rows: &[Row], verdicts: &[Verdict], peers: &[String]) -> Vec<Vec<String>> {
    let mut header: Vec<String> = ["scenario", "case", "figure", "hub", "ref", "hub/ref"].map(String::from).into();
    header.extend(peers.iter().cloned());
    header.extend(["goal", "vs baseline", "cpu% srv/lg hub", "cpu% srv/lg ref", "bound hub/ref"].map(String::from));
    let mut out = vec![header];
    for (row, verdict) in rows.iter().zip(verdicts) {
        let mut line = vec![
            row.scenario.clone(),
            row.case.clone(),
            row.label.to_owned(),
            figure(row, "hub"),
            figure(row, "ref"),
            row.ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.3}")),
        ];
        line.extend(peers.iter().map(|p| figure(row, p)));
        line.extend([
            goal_text(row),
            verdict_text(verdict),
            cpu(row, "hub"),
            cpu(row, "ref"),
            format!(
                "{}/{}",
                metrics::bound(row.figures.get("hub").and_then(|f| f.cpu)),
                metrics::bound(row.figures.get("ref").and_then(|f| f.cpu))
            ),
        ]);
        out.push(line);
    }
    out
}

/// Prints the table.
pub(crate) fn print(rows: &[Row], verdicts: &[Verdict], peers: &[String]) {
    let cells = cells(rows, verdicts, peers);
    let widths: Vec<usize> =
        (0..cells[0].len()).map(|i| cells.iter().map(|line| line[i].chars().count()).max().unwrap_or(0)).collect();
    for line in &cells {
        let padded: Vec<String> = line.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    }
}

/// Writes `report.json` and `report.md` under `dir`; returns their paths.
pub(crate) fn write(
    dir: &Path,
    summary: &Value,
    results: &[Value],
    rows: &[Row],
    verdicts: &[Verdict],
    peers: &[String],
    failures: &[String],
) -> Result<(PathBuf, PathBuf)> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json_path = dir.join("report.json");
    let metrics: Vec<Value> = rows
        .iter()
        .zip(verdicts)
        .map(|(row, verdict)| {
            let mut v = row.to_json();
            v["vs_baseline"] = json!(verdict_text(verdict));
            v
        })
        .collect();
    let report = json!({"run": summary, "metrics": metrics, "failures": failures, "results": results});
    fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;

    let mut md = String::from("# ws-hub benchmark report\n\n");
    for (key, value) in summary.as_object().into_iter().flatten() {
        let _ = writeln!(md, "- {key}: {value}");
    }
    md.push_str("\nhub/ref is the hub's figure divided by the reference server's, measured in the same run. ");
    md.push_str("cpu% is the median server / load-generator CPU in percent of one core; a case is server-bound ");
    md.push_str("when the server is near 100 % and the load generator is not.\n\n");
    let cells = cells(rows, verdicts, peers);
    for (i, line) in cells.iter().enumerate() {
        let _ = writeln!(md, "| {} |", line.join(" | "));
        if i == 0 {
            let _ = writeln!(md, "|{}", " --- |".repeat(line.len()));
        }
    }
    if failures.is_empty() {
        md.push_str("\nNo failures.\n");
    } else {
        md.push_str("\n## Failures\n\n");
        for failure in failures {
            let _ = writeln!(md, "- {failure}");
        }
    }
    let md_path = dir.join("report.md");
    fs::write(&md_path, md).with_context(|| format!("writing {}", md_path.display()))?;
    Ok((json_path, md_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_numbers() {
        assert_eq!(human(3_521_000.0), "3.52M");
        assert_eq!(human(136_564.0), "137k");
        assert_eq!(human(0.953), "0.95");
        assert_eq!(human(5_800.0), "5800");
    }
}
