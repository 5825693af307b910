//! The one rule that decides whether the tests have a broker, and where it is.
//!
//! Every test that needs the broker of `scripts/kafka` goes through [`test_broker`], directly
//! or through [`crate::bootstrap`] and [`crate::broker_available`], so they cannot disagree:
//!
//! 1. `DRIFTWATCH_TEST_BOOTSTRAP` (exported by `scripts/test` once its broker is up): that
//!    address, taken as given — if nothing listens there, the tests fail on their own.
//! 2. Otherwise the `bootstrap` file of the broker's state directory (`DRIFTWATCH_KAFKA_DIR`,
//!    default `.kafka`), written by `scripts/kafka start` for a broker started by hand, provided
//!    that address accepts a connection: a stopped broker leaves the file behind.
//! 3. Otherwise there is no broker. Under CI (`CI` set to anything but `false` or `0`, as
//!    `.ci/run` does) a test that needs one fails: a test that did not run must not count as
//!    passed. Elsewhere it is skipped, with a message written past the test harness's output
//!    capture so that it shows even though the test "passes".

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable `scripts/test` exports the broker's address in.
pub const BOOTSTRAP_ENV: &str = "DRIFTWATCH_TEST_BOOTSTRAP";

/// The broker's state directory, as `scripts/kafka` and `scripts/test` use it.
pub fn state_dir() -> PathBuf {
    match std::env::var("DRIFTWATCH_KAFKA_DIR") {
        Ok(d) if !d.trim().is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(".kafka"),
    }
}

/// Whether the tests run under CI, where every test must really run.
pub fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| means_ci(&v))
}

/// Whether a value of `CI` means CI: CI services set `true` (or `1`).
fn means_ci(v: &str) -> bool {
    let v = v.trim();
    !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false")
}

/// Whether something accepts a TCP connection at the first address of `bootstrap`.
fn answers(bootstrap: &str) -> bool {
    let Some(first) = bootstrap.split(',').next() else {
        return false;
    };
    first
        .trim()
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

/// The test broker's bootstrap address by the rule of the module docs; `None` when there is
/// none.
pub fn test_broker() -> Option<String> {
    if let Ok(b) = std::env::var(BOOTSTRAP_ENV) {
        if !b.trim().is_empty() {
            return Some(b.trim().to_string());
        }
    }
    let from_file = std::fs::read_to_string(state_dir().join("bootstrap")).ok()?;
    let b = from_file.trim();
    (!b.is_empty() && answers(b)).then(|| b.to_string())
}

fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string()
}

/// What to say when there is no broker.
fn missing() -> String {
    format!(
        "{} needs the Kafka broker of scripts/kafka, and there is none: {BOOTSTRAP_ENV} is \
         unset and {} names no broker that answers (run scripts/test, or scripts/kafka start)",
        test_name(),
        state_dir().join("bootstrap").display()
    )
}

/// `true` when the broker is there. Without one: under CI, panics (the test fails); elsewhere
/// says loudly that the test is skipped and returns `false`.
pub fn require_broker() -> bool {
    if test_broker().is_some() {
        return true;
    }
    if on_ci() {
        panic!("CI: {}", missing());
    }
    // Straight to stderr: `eprintln!` would be captured and hidden for a passing test.
    let _ = writeln!(std::io::stderr(), "\nSKIPPED {}\n", missing());
    false
}

/// The broker's address; panics, saying what to do, when there is none.
pub fn bootstrap_or_panic() -> String {
    test_broker().unwrap_or_else(|| panic!("{}", missing()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_is_detected_the_way_ci_services_set_it() {
        assert!(means_ci("true") && means_ci("1") && means_ci("TRUE"));
        assert!(!means_ci("") && !means_ci("false") && !means_ci("0"));
    }

    #[test]
    fn a_closed_port_does_not_answer() {
        // Port 1 on the loopback: nothing listens there.
        assert!(!answers("127.0.0.1:1"));
        assert!(!answers("not an address"));
    }
}
