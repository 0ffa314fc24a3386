//! Human-readable output: execution summaries and aligned tables.

use crate::model::{Execution, ExecutionError, StepRun};

/// A summary of an execution, then a table of its steps.
pub(super) fn print_execution(e: &Execution) {
    let mut summary = vec![
        cells(["execution", e.execution_id.as_str()]),
        cells(["status", e.status.as_str()]),
        cells([
            "workflow",
            &format!("{}@{}", e.workflow_id, e.workflow_version),
        ]),
        cells(["created", &e.created_at.to_string()]),
    ];
    if let Some(at) = e.finished_at {
        summary.push(cells(["finished", &at.to_string()]));
    }
    if let Some(ms) = e.duration_ms {
        summary.push(cells(["duration", &format!("{ms:.1} ms")]));
    }
    if let Some(output) = &e.output {
        summary.push(cells(["output", &output.to_string()]));
    }
    if let Some(error) = &e.error {
        summary.push(cells(["error", &describe_error(error)]));
    }
    print!("{}", table(&summary));
    if e.steps.is_empty() {
        return;
    }
    println!();
    let mut rows = vec![cells([
        "ID",
        "STEP",
        "STATUS",
        "ATTEMPTS",
        "LAST OUTCOME",
        "FUEL",
        "MEMORY PEAK",
        "MS",
    ])];
    rows.extend(e.steps.iter().map(step_row));
    print!("{}", table(&rows));
}

/// One step's row: its attempts' fuel and time summed, memory at its peak.
fn step_row(s: &StepRun) -> Vec<String> {
    let fuel: u64 = s.attempts.iter().map(|a| a.fuel_consumed).sum();
    let memory = s.attempts.iter().map(|a| a.memory_peak_bytes).max();
    let ms: f64 = s.attempts.iter().map(|a| a.duration_ms).sum();
    let last = s.attempts.last();
    cells([
        &s.id,
        &s.step,
        &format!("{:?}", s.status).to_lowercase(),
        &s.attempts.len().to_string(),
        last.map_or("-", |a| a.outcome.as_str()),
        &if last.is_some() {
            fuel.to_string()
        } else {
            "-".to_owned()
        },
        &memory.map_or_else(
            || "-".to_owned(),
            |m| bytesize::ByteSize::b(m).display().iec().to_string(),
        ),
        &if last.is_some() {
            format!("{ms:.1}")
        } else {
            "-".to_owned()
        },
    ])
}

fn describe_error(e: &ExecutionError) -> String {
    match &e.step_name {
        Some(step) => format!("step `{step}`: [{}] {}", e.code, e.message),
        None => format!("[{}] {}", e.code, e.message),
    }
}

/// A row of owned cells.
pub(super) fn cells<const N: usize>(row: [&str; N]) -> Vec<String> {
    row.map(str::to_owned).into()
}

/// Lays rows out in columns two spaces apart, each as wide as its widest
/// cell. Lines carry no trailing spaces.
pub(super) fn table(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(max) => *max = (*max).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_without_trailing_spaces() {
        let out = table(&[
            cells(["ID", "STATUS", "MS"]),
            cells(["a-long-id", "ok", "1.5"]),
            cells(["b", "", ""]),
        ]);
        assert_eq!(out, "ID         STATUS  MS\na-long-id  ok      1.5\nb\n");
    }
}
