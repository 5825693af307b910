//! The deployment files cannot be run here (no Docker, no Kubernetes), so they are checked as
//! data: every YAML/JSON file parses, the services and objects that must exist do, numbers
//! that must agree agree (autoscaling bound = input partitions), the dashboard and alerts only
//! query series driftwatch renders, the example configuration loads into [`Settings`]
//! exactly as the binary loads it (TOML, `deny_unknown_fields`), and the topics the deployments
//! create and the operations guide lists are the pipeline's topic list.
//!
//! No broker needed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use driftwatch_worker::prometheus::{render, MetricKind, MetricName, RenderOptions};
use driftwatch_worker::settings::Settings;
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every document of a (possibly multi-document) YAML file.
fn yaml_docs(rel: &str) -> Vec<Yaml> {
    let text = read(rel);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{rel}: invalid YAML: {e}"))
        })
        .collect()
}

fn yaml(rel: &str) -> Yaml {
    let mut docs = yaml_docs(rel);
    assert_eq!(docs.len(), 1, "{rel}: one document expected");
    docs.remove(0)
}

/// `v[a][b]...` as a string (numbers too), or a panic naming the path.
fn get<'a>(v: &'a Yaml, path: &[&str]) -> &'a Yaml {
    path.iter().fold(v, |v, k| {
        v.get(*k)
            .unwrap_or_else(|| panic!("missing `{}` in {v:?}", path.join(".")))
    })
}

fn str_of(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Loads a TOML configuration the way `driftwatch` does (the `config` crate, TOML format).
fn load_settings_toml(text: &str) -> Result<Settings, String> {
    let s: Settings = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| e.to_string())?;
    s.validate().map_err(|e| e.to_string())?;
    Ok(s)
}

/// Series names a PromQL expression mentions (driftwatch's and the lag series).
fn series_in(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &expr[i..];
        if rest.starts_with("driftwatch_") || rest.starts_with("kafka_consumergroup_") {
            let prev_ok = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if prev_ok {
                out.insert(rest[..len].to_string());
            }
            i += len.max(1);
        } else {
            i += 1;
        }
    }
    out
}

/// Every series name the renderer can produce (summaries with their `_sum` and `_count`).
fn rendered_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for n in MetricName::ALL {
        names.insert(n.as_str().to_string());
        if n.kind() == MetricKind::Summary {
            names.insert(format!("{}_sum", n.as_str()));
            names.insert(format!("{}_count", n.as_str()));
        }
    }
    // And they really are rendered: the name appears in the output of an empty snapshot's
    // TYPE lines or is one the test data of metrics.rs covers; check the always-present ones.
    let text = render(&Default::default(), &RenderOptions::default()).expect("render");
    assert!(text.contains(MetricName::Ready.as_str()));
    names
}

#[test]
fn every_yaml_and_json_file_parses() {
    let mut files = Vec::new();
    files_under(&repo().join("deploy"), &mut files);
    files.push(repo().join("docker-compose.yml"));
    let mut checked = 0;
    for f in files {
        let rel = f.strip_prefix(repo()).unwrap().display().to_string();
        match f.extension().and_then(|e| e.to_str()) {
            Some("yml" | "yaml") => {
                let docs = yaml_docs(&rel);
                assert!(!docs.is_empty(), "{rel}: empty");
                checked += 1;
            }
            Some("json") => {
                serde_json::from_str::<Json>(&read(&rel))
                    .unwrap_or_else(|e| panic!("{rel}: invalid JSON: {e}"));
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked >= 10, "only {checked} files checked");
}

#[test]
fn example_config_loads_and_documents_every_setting() {
    let text = read("deploy/driftwatch.example.toml");
    let loaded = load_settings_toml(&text).unwrap_or_else(|e| panic!("example config: {e}"));
    // "every setting with its default": what is written equals the defaults.
    assert_eq!(loaded, Settings::default());
    // And every setting is written, or (optional ones) shown commented out.
    let defaults = serde_json::to_value(Settings::default()).expect("serialize");
    // (table, key) of every `key = ...` line, commented out or not.
    let mut written = BTreeSet::new();
    let mut table = String::new();
    for line in text.lines() {
        // Optional tables are shown commented out, header included (`# [join.state]`).
        let l = line.trim().trim_start_matches(['#', ' ']);
        if let Some(t) = l.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            table = t.to_string();
            continue;
        }
        if let Some((k, _)) = l.split_once(" =") {
            if !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                written.insert((table.clone(), k.to_string()));
            }
        }
    }
    let mut missing = Vec::new();
    let Json::Object(sections) = defaults else {
        panic!("settings are a table")
    };
    for (section, fields) in sections {
        assert!(
            text.contains(&format!("[{section}]")),
            "[{section}] missing"
        );
        let mut stack = vec![(section.clone(), fields)];
        while let Some((prefix, v)) = stack.pop() {
            let Json::Object(map) = v else { continue };
            for (k, v) in map {
                let path = format!("{prefix}.{k}");
                match v {
                    Json::Object(ref m) if !m.is_empty() => stack.push((path, v)),
                    Json::Object(_) => {
                        if !text.contains(&format!("[{path}]")) {
                            missing.push(path);
                        }
                    }
                    _ => {
                        if !written.contains(&(prefix.clone(), k.clone())) {
                            missing.push(path);
                        }
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "settings not in the example: {missing:?}"
    );
}

#[test]
fn unknown_keys_in_a_config_file_are_refused() {
    let text = format!("{}\n[kafka.security]\nprotokol = \"ssl\"\n", "");
    let e = load_settings_toml(&text).expect_err("unknown key");
    assert!(e.contains("protokol"), "{e}");
}

#[test]
fn compose_has_every_service_with_an_image() {
    let c = yaml("docker-compose.yml");
    let services = get(&c, &["services"]);
    for name in [
        "kafka",
        "topic-init",
        "driftwatch-join",
        "generator",
        "prometheus",
        "grafana",
    ] {
        let s = get(services, &[name]);
        assert!(s.get("image").is_some(), "service {name} has no image");
    }
    assert!(str_of(get(services, &["kafka", "image"])).starts_with("apache/kafka:"));
    let kafka_env = get(services, &["kafka", "environment"]);
    assert!(str_of(get(kafka_env, &["KAFKA_PROCESS_ROLES"])).contains("controller"));
    let cmd = |svc: &str| -> Vec<String> {
        get(services, &[svc, "command"])
            .as_sequence()
            .expect("command list")
            .iter()
            .map(str_of)
            .collect()
    };
    assert_eq!(cmd("topic-init")[..2], ["topics", "create"]);
    assert_eq!(cmd("driftwatch-join"), ["run", "--role", "join"]);
    assert_eq!(cmd("generator")[0], "generate");
    // Prometheus and Grafana get the files under deploy/.
    let mounts = |svc: &str| -> String { format!("{:?}", get(services, &[svc, "volumes"])) };
    assert!(mounts("prometheus").contains("./deploy/prometheus"));
    assert!(mounts("grafana").contains("./deploy/grafana/provisioning"));
    assert!(mounts("grafana").contains("./deploy/grafana/dashboards"));
    // The join service publishes the port Prometheus scrapes.
    let prom = yaml("deploy/prometheus/prometheus.yml");
    let targets = format!("{:?}", get(&prom, &["scrape_configs"]));
    assert!(targets.contains("driftwatch-join:9898"), "{targets}");
    assert!(format!("{:?}", get(services, &["driftwatch-join", "ports"])).contains("9898"));
}

/// The deployments create their topics with `driftwatch topics create` (compose's
/// `topic-init`, `deploy/k8s/job-topics.yaml`), so they follow `topics::required`; the topic
/// table of docs/OPERATIONS.md is written by hand and must name every topic of that list with
/// its partition rule and cleanup policy.
#[test]
fn deployments_create_the_topic_list_and_the_operations_guide_documents_it() {
    use driftwatch_worker::topics::{required, Partitions, TopicRole};
    let words = |v: &Yaml| -> Vec<String> {
        v.as_sequence()
            .expect("a list")
            .iter()
            .map(str_of)
            .take(2)
            .collect()
    };
    let compose = yaml("docker-compose.yml");
    let init = words(get(&compose, &["services", "topic-init", "command"]));
    assert_eq!(init, ["topics", "create"]);
    let job = yaml("deploy/k8s/job-topics.yaml");
    let container = &get(&job, &["spec", "template", "spec", "containers"])[0];
    assert_eq!(words(get(container, &["args"])), ["topics", "create"]);

    let guide = read("docs/OPERATIONS.md");
    let rows: Vec<&str> = guide
        .lines()
        .skip_while(|l| !l.starts_with("## Topics and partitions"))
        .skip_while(|l| !l.starts_with("| topic "))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    let s = Settings::default();
    for t in required(&s) {
        // The changelogs are documented by the rule that names them.
        let documented = if t.name == s.join_changelog_topic() {
            "<join_group_id>-changelog".to_string()
        } else if t.name == s.monitor_changelog_topic() {
            "<monitor.group_id>-changelog".to_string()
        } else {
            t.name.clone()
        };
        let row = rows
            .iter()
            .find(|r| {
                r.split('|')
                    .nth(1)
                    .is_some_and(|c| c.contains(&format!("`{documented}`")))
            })
            .unwrap_or_else(|| panic!("docs/OPERATIONS.md does not list `{documented}`"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let partitions = cells.get(3).copied().unwrap_or_default();
        let rule = match t.partitions {
            Partitions::Scaled => "N",
            Partitions::One => "1",
        };
        assert!(
            partitions.starts_with(rule),
            "`{documented}`: {partitions:?}, expected {rule}"
        );
        let compacted = t
            .configs
            .iter()
            .any(|(k, v)| k == "cleanup.policy" && v == "compact");
        assert_eq!(
            row.contains("compacted"),
            compacted,
            "`{documented}`: compacted or not: {row}"
        );
        assert_eq!(
            t.role == TopicRole::Changelog,
            documented.ends_with("-changelog")
        );
    }
}

#[test]
fn dockerfile_builds_the_binary_and_runs_unprivileged() {
    let d = read("Dockerfile");
    assert!(d.matches("FROM ").count() >= 2, "multi-stage");
    assert!(d.contains("AS builder"));
    assert!(d.contains("-p driftwatch-cli"));
    assert!(d.contains("debian:bookworm-slim"));
    let user = d
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.trim().starts_with('0') && user.trim() != "root",
        "{user}"
    );
}

/// Input partitions stated in the ConfigMap.
fn configmap() -> (u64, Settings) {
    let cm = yaml("deploy/k8s/configmap.yaml");
    assert_eq!(str_of(get(&cm, &["kind"])), "ConfigMap");
    let partitions: u64 = str_of(get(&cm, &["data", "input-partitions"]))
        .parse()
        .expect("input-partitions is a number");
    let toml = str_of(get(&cm, &["data", "driftwatch.toml"]));
    let settings = load_settings_toml(&toml).unwrap_or_else(|e| panic!("ConfigMap config: {e}"));
    (partitions, settings)
}

#[test]
fn keda_scales_the_join_group_on_predictions_up_to_the_partition_count() {
    let (partitions, settings) = configmap();
    let so = yaml("deploy/k8s/keda-scaledobject.yaml");
    assert_eq!(str_of(get(&so, &["kind"])), "ScaledObject");
    assert_eq!(str_of(get(&so, &["apiVersion"])), "keda.sh/v1alpha1");
    let max: u64 = str_of(get(&so, &["spec", "maxReplicaCount"]))
        .parse()
        .unwrap();
    assert_eq!(
        max, partitions,
        "maxReplicaCount must equal the input partitions"
    );
    assert_eq!(
        str_of(get(&so, &["spec", "scaleTargetRef", "name"])),
        "driftwatch-join"
    );
    let triggers = get(&so, &["spec", "triggers"]).as_sequence().unwrap();
    assert_eq!(triggers.len(), 1);
    let t = &triggers[0];
    assert_eq!(str_of(get(t, &["type"])), "kafka");
    assert_eq!(
        str_of(get(t, &["metadata", "consumerGroup"])),
        settings.kafka.join_group_id
    );
    assert_eq!(
        str_of(get(t, &["metadata", "topic"])),
        settings.topics.predictions,
        "only the predictions topic: KEDA's default counts both inputs"
    );
    // The topic job creates that many partitions.
    let job = yaml("deploy/k8s/job-topics.yaml");
    let args = format!(
        "{:?}",
        get(&job, &["spec", "template", "spec", "containers"])
    );
    assert!(
        args.contains(&format!("String(\"{partitions}\")")),
        "job-topics.yaml must create {partitions} partitions: {args}"
    );
}

#[test]
fn k8s_objects_exist_and_select_their_pods() {
    let mut kinds = BTreeSet::new();
    let mut files = Vec::new();
    files_under(&repo().join("deploy/k8s"), &mut files);
    for f in &files {
        let rel = f.strip_prefix(repo()).unwrap().display().to_string();
        for doc in yaml_docs(&rel) {
            let kind = str_of(get(&doc, &["kind"]));
            assert!(
                doc.get("metadata")
                    .and_then(|m| m.get("namespace"))
                    .is_none(),
                "{rel}: manifests are namespace-free"
            );
            if kind == "Deployment" {
                let selector = get(&doc, &["spec", "selector", "matchLabels"]);
                let labels = get(&doc, &["spec", "template", "metadata", "labels"]);
                for (k, v) in selector.as_mapping().unwrap() {
                    assert_eq!(labels.get(k), Some(v), "{rel}: selector matches pods");
                }
                let c = &get(&doc, &["spec", "template", "spec", "containers"])
                    .as_sequence()
                    .unwrap()[0];
                let probes = format!("{:?}", c);
                assert!(
                    probes.contains("/healthz") && probes.contains("/readyz"),
                    "{rel}"
                );
                let args = format!("{:?}", get(c, &["args"]));
                assert!(args.contains("\"run\""), "{rel}: {args}");
            }
            kinds.insert(kind);
        }
    }
    for k in [
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ScaledObject",
        "Job",
        "Kustomization",
    ] {
        assert!(kinds.contains(k), "no {k} in deploy/k8s ({kinds:?})");
    }
    let roles: BTreeSet<String> = ["deployment-join.yaml", "deployment-monitor.yaml"]
        .iter()
        .map(|f| {
            let d = yaml(&format!("deploy/k8s/{f}"));
            str_of(get(
                &d,
                &[
                    "spec",
                    "template",
                    "metadata",
                    "labels",
                    "app.kubernetes.io/component",
                ],
            ))
        })
        .collect();
    assert_eq!(roles, BTreeSet::from(["join".into(), "monitor".into()]));
}

#[test]
fn dashboard_has_the_panels_and_queries_only_rendered_series() {
    let d: Json = serde_json::from_str(&read("deploy/grafana/dashboards/driftwatch.json")).unwrap();
    let panels = d["panels"].as_array().expect("panels");
    let titles: Vec<String> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap_or("").to_lowercase())
        .collect();
    for wanted in [
        "accuracy",
        "drift",
        "coverage",
        "lag",
        "throughput",
        "buffer",
        "dead letter",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(wanted)),
            "no panel about {wanted}: {titles:?}"
        );
    }
    let known = rendered_names();
    let mut used = BTreeSet::new();
    for p in panels {
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}: no query", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let names = series_in(expr);
            assert!(!names.is_empty(), "{expr}: queries no driftwatch series");
            for n in names {
                assert!(known.contains(&n), "dashboard queries `{n}`, not rendered");
                used.insert(n);
            }
        }
    }
    // The datasource the panels use is the provisioned one.
    let ds = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    let uid = str_of(get(&get(&ds, &["datasources"])[0], &["uid"]));
    assert_eq!(
        d["panels"][0]["datasource"]["uid"].as_str(),
        Some(uid.as_str())
    );
    assert!(used.len() >= 8, "{used:?}");
}

#[test]
fn alerts_are_complete_and_query_only_rendered_series() {
    let a = yaml("deploy/prometheus/alerts.yml");
    let known = rendered_names();
    let mut count = 0;
    for g in get(&a, &["groups"]).as_sequence().unwrap() {
        for r in get(g, &["rules"]).as_sequence().unwrap() {
            let name = str_of(get(r, &["alert"]));
            let expr = str_of(get(r, &["expr"]));
            str_of(get(r, &["labels", "severity"]));
            str_of(get(r, &["annotations", "summary"]));
            for n in series_in(&expr) {
                assert!(known.contains(&n), "{name} queries `{n}`, not rendered");
            }
            assert!(
                read("docs/OPERATIONS.md").contains(&name),
                "{name} is not explained in docs/OPERATIONS.md"
            );
            count += 1;
        }
    }
    assert!(count >= 5);
    let prom = yaml("deploy/prometheus/prometheus.yml");
    assert!(format!("{:?}", get(&prom, &["rule_files"])).contains("alerts.yml"));
}

#[test]
fn the_series_finder_finds_names_only_at_word_starts() {
    let s = series_in("sum(rate(driftwatch_events_in_total[5m])) / x_driftwatch_y + kafka_consumergroup_lag{a=\"b\"}");
    assert_eq!(
        s,
        BTreeSet::from([
            "driftwatch_events_in_total".to_string(),
            "kafka_consumergroup_lag".to_string()
        ])
    );
}
