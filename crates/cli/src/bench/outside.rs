//! What `driftwatch bench overload` sees of its worker from outside the worker's process: the
//! kernel's memory figures (`/proc/<pid>/status`) and the worker's own HTTP endpoints
//! (`/metrics`, `/readyz`), as an operator's tools would. Nothing here trusts a figure the
//! worker computes about its own memory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `VmRSS` and `VmHWM` (peak RSS) of a process, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss: u64,
    pub hwm: u64,
}

/// Parses the `VmRSS` and `VmHWM` lines of a `/proc/<pid>/status` text (kB).
pub fn parse_status(text: &str) -> Option<Memory> {
    let kb = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|v| v * 1024)
    };
    Some(Memory {
        rss: kb("VmRSS:")?,
        hwm: kb("VmHWM:")?,
    })
}

/// The memory of process `pid` now; `None` once it is gone.
pub fn memory(pid: u32) -> Option<Memory> {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// One HTTP/1.0 GET on 127.0.0.1 (blocking, 5 s at most): status code and body.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// The sum of every sample of `series` whose labels contain each of `labels` (exact
/// `name="value"` pairs).
pub fn sum(body: &str, series: &str, labels: &[String]) -> f64 {
    body.lines()
        .filter(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && labels.iter().all(|x| l.contains(x.as_str()))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The `lag.total` of a `/readyz` body.
pub fn readyz_lag(body: &str) -> Option<i64> {
    serde_json::from_str::<serde_json::Value>(body).ok()?["lag"]["total"].as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_give_rss_and_peak_in_bytes() {
        let text = "Name:\tdriftwatch\nVmPeak:\t  900 kB\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(
            parse_status(text),
            Some(Memory {
                rss: 1024 * 1024,
                hwm: 2048 * 1024
            })
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn series_are_summed_over_matching_labels_only() {
        let body = "# TYPE kafka_consumergroup_lag gauge\n\
            kafka_consumergroup_lag{consumergroup=\"g\",topic=\"p\",partition=\"0\"} 5\n\
            kafka_consumergroup_lag{consumergroup=\"g\",topic=\"p\",partition=\"1\"} 7\n\
            kafka_consumergroup_lag{consumergroup=\"g\",topic=\"pp\",partition=\"0\"} 100\n\
            kafka_consumergroup_lag_other{topic=\"p\"} 1000\n";
        let lag = sum(body, "kafka_consumergroup_lag", &["topic=\"p\"".into()]);
        assert_eq!(lag, 12.0);
        assert_eq!(sum(body, "kafka_consumergroup_lag", &[]), 112.0);
    }

    #[test]
    fn readyz_lag_is_the_total() {
        let body = r#"{"ready":true,"lag":{"total":42,"max_partition":40,"topics":{}}}"#;
        assert_eq!(readyz_lag(body), Some(42));
        assert_eq!(readyz_lag("not json"), None);
    }
}
