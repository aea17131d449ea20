//! The soak's figures: memory per completed request and slopes after warm-up, latency
//! percentiles, and the tables the bench prints (markdown, ready for BENCHMARKS.md) and its CSV.

use std::fmt::Write as _;

use super::*;

/// The `p`th percentile (nearest rank) of `sorted`; `None` when it is empty.
pub fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// The least-squares slope of `y` over `x`; 0 with fewer than two distinct `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x / n, sy + y / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), (x, y)| {
        (sxy + (x - mx) * (y - my), sxx + (x - mx) * (x - mx))
    });
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// Microseconds as milliseconds with two decimals.
fn ms(us: Option<i64>) -> String {
    match us {
        Some(us) => format!("{}.{:02}", us / 1000, (us % 1000).abs() / 10),
        None => "–".into(),
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

impl SoakReport {
    fn warm_sample(&self) -> &Sample {
        &self.samples[self.warm]
    }

    fn last(&self) -> &Sample {
        self.samples.last().expect("at least one sample")
    }

    /// Requests completed between the end of the warm-up and the last sample.
    pub fn completed_after_warmup(&self) -> u64 {
        self.last().completed - self.warm_sample().completed
    }

    /// Seconds between the end of the warm-up and the last sample.
    fn seconds_after_warmup(&self) -> f64 {
        (self.last().at_ms - self.warm_sample().at_ms) as f64 / 1e3
    }

    /// The coordinator's memory per completed request after the warm-up, bytes: (RSS at the
    /// end − RSS after the warm-up) / requests completed in between. `None` when none
    /// completed.
    pub fn bytes_per_completed_request(&self) -> Option<i64> {
        let completed = i64::try_from(self.completed_after_warmup()).unwrap();
        let grown = i64::try_from(self.last().coordinator_kib).unwrap()
            - i64::try_from(self.warm_sample().coordinator_kib).unwrap();
        (completed > 0).then(|| grown * 1024 / completed)
    }

    /// [`bytes_per_completed_request`](Self::bytes_per_completed_request) of each node,
    /// over every request completed (a node follows the whole log, not only its own work).
    pub fn node_bytes_per_completed_request(&self) -> Vec<Option<i64>> {
        let completed = i64::try_from(self.completed_after_warmup()).unwrap();
        let (warm, last) = (self.warm_sample(), self.last());
        warm.nodes_kib
            .iter()
            .zip(&last.nodes_kib)
            .map(|(&w, &l)| {
                let grown = i64::try_from(l).unwrap() - i64::try_from(w).unwrap();
                (completed > 0).then(|| grown * 1024 / completed)
            })
            .collect()
    }

    /// The least-squares slope of the coordinator's RSS after the warm-up: KiB per minute,
    /// and bytes per completed request.
    pub fn slopes(&self) -> (f64, f64) {
        let after = &self.samples[self.warm..];
        let over_time: Vec<(f64, f64)> = after
            .iter()
            .map(|s| (s.at_ms as f64 / 60e3, s.coordinator_kib as f64))
            .collect();
        let over_requests: Vec<(f64, f64)> = after
            .iter()
            .map(|s| (s.completed as f64, s.coordinator_kib as f64 * 1024.0))
            .collect();
        (slope(&over_time), slope(&over_requests))
    }

    fn load(&self) -> String {
        match self.config.load {
            Load::Closed { clients } => format!("closed loop, {clients} in flight"),
            Load::Open { per_second } => format!("open loop, {per_second} submissions/s"),
        }
    }

    /// The figures, as markdown tables ready for BENCHMARKS.md.
    pub fn markdown(&self) -> String {
        let c = &self.config;
        let (warm, last) = (self.warm_sample(), self.last());
        let (per_minute, per_request) = self.slopes();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} tiny-model nodes ({TINY}, 1 slot each), {}, max_tokens {}, {} s of load \
             (warm-up: the first {} %), RSS sampled every {} s",
            c.nodes,
            self.load(),
            c.max_tokens,
            c.duration.as_secs(),
            c.warmup_percent,
            c.sample_every.as_secs_f64()
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "| soak | value |");
        let _ = writeln!(out, "|---|---:|");
        let mut row = |name: &str, value: String| {
            let _ = writeln!(out, "| {name} | {value} |");
        };
        row(
            "requests completed (failed; refused; unfinished after the drain)",
            format!(
                "{} ({}; {}; {})",
                last.completed, last.failed, self.refused, self.unfinished
            ),
        );
        row(
            "completed requests/s after warm-up",
            format!(
                "{:.1}",
                self.completed_after_warmup() as f64 / self.seconds_after_warmup()
            ),
        );
        row(
            "coordinator RSS: load start / after warm-up / end (MiB)",
            format!(
                "{} / {} / {}",
                mib(self.samples[0].coordinator_kib),
                mib(warm.coordinator_kib),
                mib(last.coordinator_kib)
            ),
        );
        row(
            "coordinator RSS slope after warm-up (least squares)",
            format!("{per_minute:.0} KiB/min, {per_request:.0} bytes per completed request"),
        );
        row(
            "coordinator memory per completed request after warm-up (bytes)",
            self.bytes_per_completed_request()
                .map_or("–".into(), |b| b.to_string()),
        );
        let nodes = |s: &Sample| {
            s.nodes_kib
                .iter()
                .map(|&k| mib(k))
                .collect::<Vec<_>>()
                .join(", ")
        };
        row(
            "node RSS after warm-up → end (MiB)",
            format!("{} → {}", nodes(warm), nodes(last)),
        );
        let per_node: Vec<String> = self
            .node_bytes_per_completed_request()
            .iter()
            .map(|b| b.map_or("–".into(), |b| b.to_string()))
            .collect();
        row(
            "node memory per completed request (any node's) after warm-up (bytes)",
            per_node.join(", "),
        );
        let seconds = last.at_ms as f64 / 1e3;
        let cpu: Vec<String> = self
            .cpu_ms
            .iter()
            .map(|ms| format!("{:.0} %", ms / seconds / 10.0))
            .collect();
        let n = self.config.nodes;
        row(
            "CPU over the load: coordinator; nodes; client (% of one core)",
            format!("{}; {}; {}", cpu[0], cpu[1..=n].join(", "), cpu[n + 1]),
        );
        row("log records at the end", self.log_records.to_string());
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| latency, requests admitted after warm-up (ms) | n | p50 | p90 | p99 | max |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for (name, v) in [
            ("admit → first dispatch", &self.admit_to_dispatch_us),
            ("admit → result returned", &self.admit_to_result_us),
        ] {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} |",
                v.len(),
                ms(percentile(v, 50)),
                ms(percentile(v, 90)),
                ms(percentile(v, 99)),
                ms(v.last().copied())
            );
        }
        out
    }

    /// The samples as a table of at most `rows` rows (every nth sample, and the last).
    pub fn samples_table(&self, rows: usize) -> String {
        let every = self.samples.len().div_ceil(rows.max(1)).max(1);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| s | completed | coordinator RSS (MiB) | node RSS (MiB) |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---|");
        let last = self.samples.len() - 1;
        for (i, s) in self.samples.iter().enumerate() {
            if i % every != 0 && i != last && i != self.warm {
                continue;
            }
            let nodes: Vec<String> = s.nodes_kib.iter().map(|&k| mib(k)).collect();
            let _ = writeln!(
                out,
                "| {}{} | {} | {} | {} |",
                s.at_ms / 1000,
                if i == self.warm { " (warm)" } else { "" },
                s.completed,
                mib(s.coordinator_kib),
                nodes.join(", ")
            );
        }
        out
    }

    /// Every sample as CSV: seconds, completed, failed, the coordinator's RSS and each
    /// node's, KiB.
    pub fn csv(&self) -> String {
        let mut out = String::from("ms,completed,failed,coordinator_kib");
        for i in 0..self.config.nodes {
            let _ = write!(out, ",node{i}_kib");
        }
        out.push('\n');
        for s in &self.samples {
            let _ = write!(
                out,
                "{},{},{},{}",
                s.at_ms, s.completed, s.failed, s.coordinator_kib
            );
            for k in &s.nodes_kib {
                let _ = write!(out, ",{k}");
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 99), Some(99));
        assert_eq!(percentile(&v, 100), Some(100));
        assert_eq!(percentile(&[7], 1), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn the_slope_of_a_line_is_its_gradient() {
        let points: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 * x as f64 + 2.0)).collect();
        assert!((slope(&points) - 3.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 5.0)]), 0.0);
    }
}
