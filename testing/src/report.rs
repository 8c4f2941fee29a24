//! Output: a table for people, or `--json` for programs.

use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::Summary;

/// A scenario's result: serializable for `--json`, printable as a table.
pub(crate) trait Report: Serialize {
    fn table(&self) -> Table;
}

/// The text printed on stdout for a report.
pub(crate) fn render<R: Report>(report: &R, json: bool) -> String {
    if json {
        // Reports hold only numbers, strings, bools and vectors of them, which
        // serde_json always serializes.
        let mut s = serde_json::to_string_pretty(report).expect("plain data serializes");
        s.push('\n');
        s
    } else {
        report.table().to_string()
    }
}

/// A latency summary as one cell: `p50 / p90 / p95 / p99 / max` in ms.
pub(crate) fn latency_cell(s: &Summary) -> String {
    format!(
        "{} / {} / {} / {} / {} ms (n={})",
        ms(s.p50_ms),
        ms(s.p90_ms),
        ms(s.p95_ms),
        ms(s.p99_ms),
        ms(s.max_ms),
        s.count
    )
}

/// Milliseconds with microsecond precision.
pub(crate) fn ms(v: f64) -> String {
    format!("{v:.3}")
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
pub(crate) fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// A titled list of `key  value` rows, then optional grid (one row per sweep
/// step, say), then notes.
#[derive(Debug, Default)]
pub(crate) struct Table {
    title: String,
    rows: Vec<(String, String)>,
    grid: Option<(Vec<String>, Vec<Vec<String>>)>,
    notes: Vec<String>,
}

impl Table {
    pub(crate) fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            ..Self::default()
        }
    }

    pub(crate) fn row(mut self, key: &str, value: impl ToString) -> Self {
        self.rows.push((key.to_owned(), value.to_string()));
        self
    }

    pub(crate) fn grid(mut self, header: &[&str], rows: Vec<Vec<String>>) -> Self {
        self.grid = Some((header.iter().map(|h| (*h).to_owned()).collect(), rows));
        self
    }

    pub(crate) fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.title);
        let width = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in &self.rows {
            let _ = writeln!(out, "  {k:<width$}  {v}");
        }
        if let Some((header, rows)) = &self.grid {
            let mut widths: Vec<usize> = header.iter().map(String::len).collect();
            for row in rows {
                for (i, cell) in row.iter().enumerate() {
                    if let Some(w) = widths.get_mut(i) {
                        *w = (*w).max(cell.len());
                    }
                }
            }
            let line = |cells: &[String]| {
                let mut l = String::new();
                for (cell, w) in cells.iter().zip(&widths) {
                    let _ = write!(l, "  {cell:>w$}");
                }
                l
            };
            let _ = writeln!(out, "{}", line(header));
            for row in rows {
                let _ = writeln!(out, "{}", line(row));
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Fake {
        name: &'static str,
        latency: Summary,
    }

    impl Report for Fake {
        fn table(&self) -> Table {
            Table::new("fake run")
                .row("name", self.name)
                .row("latency", latency_cell(&self.latency))
                .grid(
                    &["clients", "p50"],
                    vec![
                        vec!["10".into(), "0.5".into()],
                        vec!["1000".into(), "12.25".into()],
                    ],
                )
                .note("just a test")
        }
    }

    fn fake() -> Fake {
        Fake {
            name: "a \"quoted\" name",
            latency: Summary {
                count: 3,
                p50_ms: 0.1234,
                p90_ms: 1.0,
                p95_ms: 2.0,
                p99_ms: 3.5,
                max_ms: 10.0,
                mean_ms: 1.0,
            },
        }
    }

    #[test]
    fn table_aligns_rows_and_grid() {
        let text = render(&fake(), false);
        let want = "fake run\n\
                    \x20 name     a \"quoted\" name\n\
                    \x20 latency  0.123 / 1.000 / 2.000 / 3.500 / 10.000 ms (n=3)\n\
                    \x20 clients    p50\n\
                    \x20      10    0.5\n\
                    \x20    1000  12.25\n\
                    \x20 note: just a test\n";
        assert_eq!(text, want);
    }

    #[test]
    fn json_round_trips_numbers_and_escapes_strings() {
        let text = render(&fake(), true);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["name"], "a \"quoted\" name");
        assert_eq!(v["latency"]["count"], 3);
        assert_eq!(v["latency"]["p99_ms"], 3.5);
    }

    #[test]
    fn percent_and_ms_format() {
        assert_eq!(percent(1, 4), 25.0);
        assert_eq!(percent(5, 0), 0.0);
        assert_eq!(ms(0.0004), "0.000");
        assert_eq!(ms(1.23456), "1.235");
    }
}
