//! The `driftwatch` binary as a user runs it: help, bad usage, bad configuration, offline
//! checks, environment overrides, an unreachable broker.
//!
//! None of these needs a broker: they run with the unit tests, before `scripts/test` starts
//! one. The binary against the real broker (`topics create`, `check-config`) is tested in the
//! root package, `tests/cli_broker.rs`, with the other tests that need it.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

const EXIT_USAGE: i32 = 2;

fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/driftwatch.example.toml")
}

/// The binary with a clean environment: no config file or overrides from the caller's shell.
fn driftwatch() -> Command {
    let mut cmd = Command::cargo_bin("driftwatch").expect("binary built by cargo test");
    for (k, _) in std::env::vars() {
        if k.starts_with("DRIFTWATCH") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_file(name: &str, content: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("driftwatch-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, content).expect("write temp file");
    p
}

/// Subcommand names listed under `Commands:` in a help text (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_subcommand_has_help() {
    let out = driftwatch().arg("--help").output().unwrap();
    assert!(out.status.success());
    let (top, _) = text(&out);
    let commands = subcommands(&top);
    for expected in ["run", "check-config", "topics"] {
        assert!(
            commands.iter().any(|c| c == expected),
            "{expected} in {commands:?}"
        );
    }
    // Walk the tree: every command and nested command answers --help with usage and exit 0.
    let mut queue: Vec<Vec<String>> = commands.into_iter().map(|c| vec![c]).collect();
    let mut seen = 0;
    while let Some(path) = queue.pop() {
        seen += 1;
        let out = driftwatch().args(&path).arg("--help").output().unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{path:?} --help: {stderr}");
        let usage = format!("Usage: driftwatch {}", path.join(" "));
        assert!(stdout.contains(&usage), "{path:?}: {stdout}");
        for sub in subcommands(&stdout) {
            let mut p = path.clone();
            p.push(sub);
            queue.push(p);
        }
    }
    assert!(seen >= 4, "only {seen} commands found");
}

/// A first `driftwatch run` runs both stages: the join alone would never show a drift or
/// retrain event.
#[test]
fn run_runs_both_stages_unless_told_otherwise() {
    let out = driftwatch().args(["run", "--help"]).output().unwrap();
    let (stdout, _) = text(&out);
    assert!(stdout.contains("[default: all]"), "{stdout}");
}

#[test]
fn version_is_printed() {
    let out = driftwatch().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(text(&out).0.starts_with("driftwatch "));
}

#[test]
fn bad_flag_exits_2_naming_the_flag() {
    let out = driftwatch()
        .args(["check-config", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    let (_, stderr) = text(&out);
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
    let out = driftwatch().arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
}

#[test]
fn unknown_config_field_exits_2_naming_the_field() {
    let f = temp_file(
        "unknown.toml",
        "[kafka]\nbootstrap_servers = \"x:1\"\nbootstrap_typo = \"y\"\n",
    );
    let out = driftwatch()
        .args(["check-config", "--offline", "-c"])
        .arg(&f)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&f);
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    let (_, stderr) = text(&out);
    assert!(stderr.contains("bootstrap_typo"), "{stderr}");
}

#[test]
fn missing_config_file_exits_2_naming_it() {
    let out = driftwatch()
        .args([
            "check-config",
            "--offline",
            "-c",
            "/nonexistent/driftwatch.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    assert!(text(&out).1.contains("/nonexistent/driftwatch.toml"));
}

#[test]
fn inconsistent_config_exits_2_saying_what_to_change() {
    let out = driftwatch()
        .args(["check-config", "--offline"])
        .env("DRIFTWATCH__TOPICS__GROUND_TRUTH", "predictions")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    assert!(text(&out).1.contains("must differ"), "{:?}", text(&out));
}

#[test]
fn check_config_reports_the_state_dir_and_budget_and_refuses_an_unusable_dir() {
    let dir = std::env::temp_dir().join(format!("driftwatch-cli-{}-state", std::process::id()));
    let out = driftwatch()
        .args(["check-config", "--offline"])
        .env("DRIFTWATCH__JOIN__STATE__DIR", &dir)
        .env("DRIFTWATCH__JOIN__STATE__MEMORY_BUDGET", "64MiB")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(&dir.display().to_string()), "{stdout}");
    assert!(stdout.contains("64.0 MiB"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);

    let out = driftwatch()
        .args(["check-config", "--offline"])
        .output()
        .unwrap();
    assert!(text(&out).0.contains("in memory only"), "{:?}", text(&out));

    // A folder below a plain file cannot be created, whoever runs the test.
    let file = temp_file("state-file", "x");
    let out = driftwatch()
        .args(["check-config", "--offline"])
        .env("DRIFTWATCH__JOIN__STATE__DIR", file.join("state"))
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("join.state.dir"), "{:?}", text(&out));
}

#[test]
fn example_config_is_valid_offline() {
    let out = driftwatch()
        .args(["check-config", "--offline", "-c"])
        .arg(example_config())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    assert!(
        stdout.contains(
            "detectors:     accuracy_drop, misrouted_inputs, adwin, page_hinkley, ddm (default"
        ),
        "{stdout}"
    );
    // The estimated drop, off by default, shows once enabled.
    let out = driftwatch()
        .args(["check-config", "--offline", "-c"])
        .arg(example_config())
        .env(
            "DRIFTWATCH__MONITOR__DETECTION__DEFAULT__ESTIMATED_DROP__ENABLED",
            "true",
        )
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("detectors:     accuracy_drop, estimated_drop, misrouted_inputs, adwin"),
        "{stdout}"
    );
}

#[test]
fn a_wrong_duration_exits_2_naming_its_key() {
    let f = temp_file(
        "duration.toml",
        "[monitor.detection.default]\nmaturity = \"15x\"\n",
    );
    let out = driftwatch()
        .args(["check-config", "--offline", "-c"])
        .arg(&f)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&f);
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("monitor.detection.default.maturity") && stderr.contains("`15x`"),
        "{stderr}"
    );
    let out = driftwatch()
        .args(["check-config", "--offline"])
        .env(
            "DRIFTWATCH__MONITOR__DETECTION__DEFAULT__ADWIN__HOLD",
            "30 mn",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("monitor.detection.default.adwin.hold"),
        "{stderr}"
    );
}

#[test]
fn durations_in_the_former_millisecond_keys_still_load() {
    // A file written before the detection durations became humantime text.
    let f = temp_file(
        "former.toml",
        "[monitor.detection.default]\nmaturity_ms = 900000\n\
         [monitor.detection.default.baseline]\nwarmup_ms = 0\n\
         [monitor.detection.default.adwin]\nhold_ms = 1800000\n\
         [monitor.detection.default.policy]\ncooldown_ms = 86400000\n\
         [monitor.detection.models.fraud]\nmaturity = \"1h 30m\"\n",
    );
    let out = driftwatch()
        .args(["check-config", "--offline", "-c"])
        .arg(&f)
        .env(
            "DRIFTWATCH__MONITOR__DETECTION__DEFAULT__PAGE_HINKLEY__HOLD_MS",
            "600000",
        )
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    // Whole milliseconds from the environment are still read as such (and validated).
    let out = driftwatch()
        .args(["check-config", "--offline", "-c"])
        .arg(&f)
        .env("DRIFTWATCH__MONITOR__DETECTION__DEFAULT__MATURITY_MS", "-1")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&f);
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    let (_, stderr) = text(&out);
    assert!(stderr.contains("maturity: -1 ms must be >= 0"), "{stderr}");
}

#[test]
fn environment_overrides_the_file() {
    let out = driftwatch()
        .args(["check-config", "--offline", "-c"])
        .arg(example_config())
        .env(
            "DRIFTWATCH__KAFKA__BOOTSTRAP_SERVERS",
            "broker-from-env:19092",
        )
        .env("DRIFTWATCH__KAFKA__JOIN_GROUP_ID", "group-from-env")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("broker-from-env:19092"), "{stdout}");
    assert!(stdout.contains("group-from-env"), "{stdout}");
}

#[test]
fn sasl_settings_from_the_environment_never_print_the_password() {
    let secret = "pw-that-must-not-appear-7f3a";
    let out = driftwatch()
        .args(["--log-format", "json", "check-config", "--offline"])
        .env("DRIFTWATCH_LOG", "trace")
        .env("DRIFTWATCH__KAFKA__SECURITY__PROTOCOL", "sasl_ssl")
        .env(
            "DRIFTWATCH__KAFKA__SECURITY__SASL_MECHANISM",
            "SCRAM-SHA-256",
        )
        .env("DRIFTWATCH__KAFKA__SECURITY__SASL_USERNAME", "svc")
        .env("DRIFTWATCH__KAFKA__SECURITY__SASL_PASSWORD", secret)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(!stdout.contains(secret) && !stderr.contains(secret));
}

#[test]
fn incomplete_sasl_settings_exit_2() {
    let out = driftwatch()
        .args(["check-config", "--offline"])
        .env("DRIFTWATCH__KAFKA__SECURITY__PROTOCOL", "sasl_ssl")
        .env("DRIFTWATCH__KAFKA__SECURITY__SASL_USERNAME", "svc")
        .env(
            "DRIFTWATCH__KAFKA__SECURITY__SASL_PASSWORD_FILE",
            "/nonexistent/secret",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    assert!(text(&out).1.contains("sasl_mechanism"), "{:?}", text(&out));
}

#[test]
fn unreachable_broker_fails_with_one_clear_line() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let out = driftwatch()
        .arg("check-config")
        .env("DRIFTWATCH__KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
        .env("DRIFTWATCH_LOG", "off")
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert_ne!(out.status.code(), Some(EXIT_USAGE));
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("127.0.0.1:1"), "{stderr}");
}
