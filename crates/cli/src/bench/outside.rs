//! What `driftwatch bench` sees of a process from outside its own code: the kernel's memory
//! and CPU figures (`/proc/<pid>/status`, `/proc/<pid>/stat`) and, for `bench overload`'s
//! worker, its HTTP endpoints (`/metrics`, `/readyz`), as an operator's tools would. Nothing
//! here trusts a figure a process computes about its own memory.

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

/// Clock ticks per second of `/proc/<pid>/stat`'s CPU times: `USER_HZ`, 100 in every Linux
/// ABI (the kernel converts to it whatever its own tick rate).
const USER_HZ: f64 = 100.0;

/// User plus system CPU seconds of a `/proc/<pid>/stat` text (fields 14 and 15, counted after
/// the command name, which may itself hold spaces and parentheses).
pub fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields from the third (state) on: utime and stime are the 12th and 13th of these.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// CPU seconds process `pid` has used, all its threads; `None` once it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    parse_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Resets the kernel's peak resident set (`VmHWM`) of process `pid` to its current one, so a
/// phase's peak can be read afterwards (`clear_refs` value 5). False where not permitted.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
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
    #[test]
    fn stat_lines_give_cpu_seconds_even_with_odd_names() {
        let stat =
            "4242 (drift watch) (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1 2 3";
        assert_eq!(super::parse_cpu_seconds(stat), Some(3.25));
        assert_eq!(super::parse_cpu_seconds("4242 (x"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu_and_its_peak_can_be_reset() {
        let pid = std::process::id();
        assert!(super::cpu_seconds(pid).is_some_and(|c| c >= 0.0));
        assert!(super::reset_peak(pid));
        let m = super::memory(pid).unwrap_or_default();
        assert!(m.hwm >= m.rss && m.rss > 0, "{m:?}");
    }

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
