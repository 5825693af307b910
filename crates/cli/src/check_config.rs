//! `driftwatch check-config`: the settings as driftwatch reads them and, online, what the
//! brokers, topics, registry and recent input records say about them.

use std::time::Duration;

use driftwatch_worker::settings::Settings;
use driftwatch_worker::topics::TopicChecker;

pub fn check_config(settings: &Settings, offline: bool) -> anyhow::Result<()> {
    let t = &settings.topics;
    println!("configuration is valid");
    println!("  brokers:       {}", settings.kafka.bootstrap_servers);
    println!("  join group:    {}", settings.kafka.join_group_id);
    println!("  inputs:        {} + {}", t.predictions, t.ground_truth);
    println!("  partials to:   {}", t.model_partials);
    println!("  dead letters:  {}", t.dead_letter);
    println!("  monitor group: {}", settings.monitor.group_id);
    let detection = &settings.monitor.detection;
    println!(
        "  detectors:     {} (default profile; {} model override(s))",
        detection.default.enabled_detectors().join(", "),
        detection.models.len()
    );
    if settings.kafka.exactly_once() {
        println!(
            "  guarantee:     exactly_once (state in {} and {})",
            settings.join_changelog_topic(),
            settings.monitor_changelog_topic()
        );
    } else {
        println!("  guarantee:     at_least_once (state in memory only)");
    }
    println!(
        "  label timeout: {:?} (orphan timeout {:?})",
        settings.join.label_timeout, settings.join.orphan_timeout
    );
    let state = &settings.join.state;
    match state.dir() {
        Some(dir) => {
            // A local check: done offline too.
            state.check_dir()?;
            println!(
                "  join state:    {} (writable); {} of entries in memory per worker, the rest on disk",
                dir.display(),
                state.memory_budget()
            );
        }
        None => println!("  join state:    in memory only (join.state.dir not set)"),
    }
    for s in &settings.sources {
        println!(
            "  source:        {} ({}; reads {}; pairs within {:?}) -> {} (group {}, one member)",
            s.name,
            if s.seldon.is_some() {
                "Seldon Core 2"
            } else {
                "KServe"
            },
            s.subscription().join(", "),
            s.pair_wait,
            t.predictions,
            settings.sources_group_id()
        );
    }
    let registry = &settings.schema_registry;
    if registry.enabled() {
        println!(
            "  schema registry: {} (writer schemas of framed payloads by id{})",
            registry.url.trim(),
            if registry.username.is_some() {
                ", basic auth"
            } else {
                ""
            }
        );
    } else {
        println!(
            "  schema registry: none (a framed payload is dead-lettered: unknown writer schema id)"
        );
    }
    if offline {
        return Ok(());
    }
    if registry.enabled() {
        let client = driftwatch_worker::schema_registry::RegistryClient::new(registry)?;
        let answered = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(client.check())
        });
        answered.map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("  schema registry answers: GET /subjects returned 200");
    }
    let brokers = driftwatch_worker::clients::probe(&settings.kafka, Duration::from_secs(10))?;
    println!("  reachable:     {brokers} broker(s)");
    let checker = TopicChecker::new(&settings.kafka, Duration::from_secs(10))?;
    let n = checker.copartitioned(&t.predictions, &t.ground_truth)?;
    println!("  inputs are co-partitioned: {n} partitions each; up to {n} join workers get work");
    for out in [&t.model_partials, &t.dead_letter] {
        let p = checker.partitions(out)?;
        println!("  output {out}: {p} partitions");
    }
    if settings.join.misrouted.repartitions() {
        checker.copartitioned(&t.predictions, &t.repartition)?;
        println!(
            "  misrouted:     repartitioned through {} (co-partitioned)",
            t.repartition
        );
    }
    check_routing(settings, n)
}

/// Samples the latest records of each input partition and checks each against its key's
/// murmur2 partition; fails when a topic's misrouted share is above
/// `join.misrouted_alert_share`.
fn check_routing(settings: &Settings, partitions: usize) -> anyhow::Result<()> {
    use driftwatch_worker::join::TopicRouting;
    const PER_PARTITION: i64 = 1_000;
    let j = &settings.join;
    let mut flagged = Vec::new();
    for topic in [&settings.topics.predictions, &settings.topics.ground_truth] {
        let tally = driftwatch_worker::routing_sample::sample_routing(
            &settings.kafka,
            topic,
            partitions,
            PER_PARTITION,
            Duration::from_secs(10),
        )?;
        let r = TopicRouting::of(tally, j.misrouted_alert_share, j.misrouted_min_records);
        if tally.checked == 0 {
            println!("  routing of {topic}: no recent keyed records to check");
            continue;
        }
        println!(
            "  routing of {topic}: {} recent keyed records checked, {} misrouted ({:.1} %), partitioner {}",
            tally.checked,
            tally.misrouted,
            100.0 * r.share,
            r.likely_partitioner.describe()
        );
        if r.alert {
            flagged.push(format!(
                "{topic}: {:.1} % of recent records are not on their key's murmur2 partition (likely partitioner: {})",
                100.0 * r.share,
                r.likely_partitioner.describe()
            ));
        }
    }
    if !flagged.is_empty() && j.misrouted.repartitions() {
        println!(
            "  misrouted records are joined through {} (join.misrouted = repartition), one extra hop each: {}",
            settings.topics.repartition,
            flagged.join("; ")
        );
    } else if !flagged.is_empty() {
        anyhow::bail!(
            "misrouted input records (above join.misrouted_alert_share = {}): {}; such records cannot meet their partners",
            j.misrouted_alert_share,
            flagged.join("; ")
        );
    }
    Ok(())
}
