//! `driftwatch`: watch ML models in production from Kafka.
//!
//! Exit codes: 0 success; 1 runtime failure (broker, topics, I/O); 2 bad usage or invalid
//! configuration.

mod backtest;
mod bench;
mod check_config;
mod compare;
mod demo;
mod generate;
mod input;
mod logging;
mod malloc;
mod profile;
mod settings_file;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use driftwatch_worker::clients::create_topics;
use driftwatch_worker::settings::Settings;

/// Exit code of bad usage or configuration (clap uses the same for bad flags).
const EXIT_CONFIG: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "driftwatch",
    version,
    about = "Watch ML models in production from Kafka: join predictions with delayed ground truth, detect drift, publish retrain events."
)]
struct Cli {
    /// Configuration file (TOML). Environment variables DRIFTWATCH__SECTION__KEY override it,
    /// e.g. DRIFTWATCH__KAFKA__BOOTSTRAP_SERVERS=broker:9092.
    #[arg(long, short = 'c', global = true, env = "DRIFTWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipeline: every stage, or one of them.
    ///
    /// Example: driftwatch run -c deploy/driftwatch.example.toml
    Run {
        /// Which stage to run. Default `all`: join and monitor, and the sources stage when
        /// `[[sources]]` are configured (the join alone publishes no drift or retrain event, so
        /// a first run with one role would show none); deployments that scale the stages apart
        /// name theirs.
        #[arg(long, value_enum, default_value_t = Role::All)]
        role: Role,
    },
    /// Validate the configuration and the topics it names against the broker; print the plan.
    ///
    /// Against the broker it also reads the latest records of each input partition and checks
    /// each against its key's murmur2 partition; it fails when a topic's misrouted share is
    /// above `join.misrouted_alert_share` (a producer on another partitioner).
    ///
    /// Example: driftwatch check-config -c deploy/driftwatch.example.toml
    CheckConfig {
        /// Only validate the file, do not contact the broker.
        #[arg(long)]
        offline: bool,
    },
    /// Manage driftwatch's topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// The whole pipeline on an embedded Kafka in about a minute: generated traffic for two
    /// models, one of which drifts halfway; a live table and every drift/retrain event.
    ///
    /// Examples:
    ///   driftwatch demo
    ///   driftwatch demo --bootstrap-servers 127.0.0.1:9092
    Demo(DemoArgs),
    /// End-to-end benchmark against a real broker: producer rate, raw consume rate, maximum
    /// throughput of the join stage and of the whole pipeline, and join latency at half the
    /// join's throughput.
    ///
    /// Both throughputs are timed on a backlog from the first input the join consumes: `join`
    /// until the join group's committed offsets reach the end of the inputs; `end to end` until
    /// the monitor, having judged the backlog's last epoch, commits. The end-to-end time
    /// includes the join's idle timeout: at the end of a finite backlog, only then does its
    /// watermark pass the last epochs.
    ///
    /// Example (with the development broker):
    ///   scripts/kafka start
    ///   driftwatch bench --bootstrap-servers "$(scripts/kafka bootstrap)"
    Bench(BenchArgs),
    /// Build a reference profile of a model version from its training data (CSV, JSON lines
    /// or Avro) and publish it to the compacted model-references topic (or write it to a file).
    ///
    /// Examples:
    ///   driftwatch profile --model fraud --version v3 --input train.csv --label-column label
    ///   driftwatch profile --model fraud --version v3 --input train.avro --output ref.json
    Profile(profile::ProfileArgs),
    /// Data drift between two files, offline, judged as the monitor judges it
    ///
    /// Every column goes through the monitor's statistics and defaults (Evidently's). Reads
    /// CSV, JSON lines, Avro container files and Parquet; the format comes from the extension.
    ///
    /// A column's kind (numerical or categorical) is the reference's majority kind, as in the
    /// monitor; values of the other kind are a note on stderr, not an error. Dataset drift when
    /// at least 50 % of the compared columns drifted (Evidently's default). Unreadable input
    /// exits with code 1 and a message naming the file, line and column.
    ///
    /// Examples:
    ///   driftwatch compare --reference train.parquet --current last_week.csv
    ///   driftwatch compare --reference a.csv --current b.csv --columns age,country --format json
    ///   driftwatch compare --reference a.csv --current b.csv --format html --output drift.html
    #[command(verbatim_doc_comment)]
    Compare(compare::CompareArgs),
    /// Publish synthetic predictions and delayed labels to the input topics (or write them to
    /// JSON-lines files), deterministic for a seed.
    ///
    /// Examples:
    ///   driftwatch generate --scenario drift --duration 2h --time-scale 120
    ///   driftwatch generate --rate 1000 --duration 10m --time-scale 0 --output-dir /tmp/traffic
    Generate(GenerateArgs),
    /// Replay a history through the monitor and compare retrain policies
    ///
    /// Predictions and labels go through the join, windows, detectors and retrain policies in
    /// event time; the configured policy is compared with never retraining, a fixed interval
    /// and any --policy files. Sources: JSON lines files in the documented JSON form, or Avro container files. Per model
    /// and policy: retrains, hours below the accuracy SLO, accuracy-hours lost, cost.
    ///
    /// Examples:
    ///   driftwatch backtest --predictions p.jsonl --ground-truth gt.jsonl
    ///   driftwatch backtest -c prod.toml --predictions p.avro --ground-truth gt.avro \
    ///     --policy eager.toml --fixed-interval 3d --format html --output backtest.html
    #[command(verbatim_doc_comment)]
    Backtest(backtest::BacktestArgs),
}

#[derive(clap::Args, Debug)]
struct GenerateArgs {
    /// Ready-made scenario: `drift` makes the first model's accuracy fall to 0.70 and its
    /// feature x0 shift halfway through.
    #[arg(long, value_enum, default_value_t = ScenarioArg::Stable)]
    scenario: ScenarioArg,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Predictions per second of event time, over all models.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Event-time span of the traffic, e.g. 90s, 2h.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    duration: std::time::Duration,
    /// Event time runs this many times faster than the wall clock; 0 publishes as fast as
    /// possible.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Event time of the first prediction (ms since the epoch). Default: now in real time,
    /// otherwise now minus the duration, so the traffic never lies in the future.
    #[arg(long)]
    start_ms: Option<i64>,
    /// Write predictions.jsonl and ground-truth.jsonl here instead of publishing.
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// A TOML file with the full generator configuration (models, delays, loss, events);
    /// flags given explicitly are applied on top.
    #[arg(long)]
    generator_config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct BenchArgs {
    #[command(subcommand)]
    what: Option<BenchCommand>,
    /// The broker to measure (overrides kafka.bootstrap_servers).
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Predictions in the backlog (each brings about 0.95 labels).
    #[arg(long, default_value_t = 500_000)]
    predictions: u64,
    /// Partitions of each input topic.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=1024))]
    partitions: i32,
    /// How long the half-load latency phase publishes.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    latency_time: std::time::Duration,
    /// Measure only the latency, at this offered load (inputs/s: predictions + labels),
    /// instead of half of the join's measured throughput (skips the backlog phases).
    #[arg(long)]
    latency_load: Option<f64>,
    /// Seed of the generated traffic.
    #[arg(long, default_value_t = 11)]
    seed: u64,
    /// Publish the labels on their CRC32 partition (librdkafka's default partitioner), so
    /// about (n−1)/n are misrouted, and run the join with `join.misrouted = "repartition"`:
    /// the cost of the extra hop.
    #[arg(long)]
    crc32_labels: bool,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// The join's state under a memory budget, in-process (no Kafka): see `bench/state.rs`.
    ///
    /// Example:
    ///   driftwatch bench state --pending 20000000 --memory-budget 256MiB --state-dir /tmp/s
    #[command(verbatim_doc_comment)]
    State(bench::state::StateArgs),
    /// One worker process overloaded at twice its capacity, on a real broker.
    ///
    /// It is offered about twice its capacity for minutes, then nothing: peak RSS (from
    /// /proc), lag (/metrics, /readyz), catch-up time and exact accounting; see
    /// `bench/overload.rs`.
    ///
    /// Example:
    ///   driftwatch bench overload --bootstrap-servers "$(scripts/kafka bootstrap)" --overload-time 5m
    #[command(verbatim_doc_comment)]
    Overload(bench::overload::OverloadArgs),
}

#[derive(clap::Args, Debug)]
struct DemoArgs {
    /// Run against this broker instead of the embedded one (topics are created if missing).
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Wall-clock time over which the traffic (two hours of event time) is replayed.
    #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
    traffic_time: std::time::Duration,
    /// Predictions in all (the embedded Kafka keeps at most 5 MiB per partition).
    #[arg(long, default_value_t = 24_000, value_parser = clap::value_parser!(u64).range(1_000..=60_000))]
    predictions: u64,
    /// Seed of the generated traffic.
    #[arg(long, default_value_t = demo::DEFAULT_SEED)]
    seed: u64,
    /// No live table: only events and the summary.
    #[arg(long)]
    quiet: bool,
    /// Logs on standard error instead of a file (whose path the demo prints).
    #[arg(long)]
    verbose: bool,
    /// Keep the web console up after the scenario, until Ctrl-C.
    #[arg(long)]
    ui: bool,
    /// Address of the web console (port 0: any free port; a taken port falls back to one).
    #[arg(long, default_value = "127.0.0.1:9898")]
    console_bind: std::net::SocketAddr,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum ScenarioArg {
    Stable,
    Drift,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Role {
    /// The join stage: predictions ⋈ ground truth → model partials.
    Join,
    /// The monitor stage: model partials → drift events, retrain events, metrics snapshots.
    Monitor,
    /// The sources stage: Seldon Core 2 / KServe topics (`[[sources]]`) → predictions. Runs
    /// as one member of its group.
    Sources,
    /// Join and monitor in one process, and the sources stage when `[[sources]]` are
    /// configured.
    All,
}

#[derive(Subcommand, Debug)]
enum TopicsCommand {
    /// Create every topic driftwatch needs (existing ones are left alone).
    ///
    /// Example: driftwatch topics create --partitions 8
    Create {
        /// Partitions of the input and internal topics (both inputs get the same count).
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=10_000))]
        partitions: i32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's terminal is its live table: its logs go to a file unless `--verbose`.
    let log_file = match &cli.command {
        Command::Demo(args) if !args.verbose => {
            Some(std::env::temp_dir().join(format!("driftwatch-demo-{}.log", std::process::id())))
        }
        _ => None,
    };
    let log_file = logging::init_logging(cli.log_format, log_file);
    // Offline and synchronous: need neither the configuration nor the async runtime.
    let offline = match &cli.command {
        Command::Compare(args) => Some(compare::run(args)),
        Command::Bench(BenchArgs {
            what: Some(BenchCommand::State(args)),
            ..
        }) => Some(bench::state::run(args)),
        _ => None,
    };
    if let Some(result) = offline {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("driftwatch: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let settings = match settings_file::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("driftwatch: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("driftwatch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The embedded Kafka of the demo lives on this thread for the whole run.
    let embedded = match &cli.command {
        Command::Demo(args) if args.bootstrap_servers.is_none() => {
            match demo::EmbeddedKafka::start() {
                Ok(k) => Some(k),
                Err(e) => {
                    eprintln!("driftwatch: {e:#}");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    // The demo's settings are made once: their topic and group names are unique per run.
    let demo = match &cli.command {
        Command::Demo(args) => {
            let bootstrap = match (&args.bootstrap_servers, &embedded) {
                (Some(b), _) => b.clone(),
                (None, Some(k)) => k.bootstrap_servers(),
                (None, None) => String::new(),
            };
            match demo::demo_settings(&settings, &bootstrap) {
                Ok(mut s) => {
                    if embedded.is_some() {
                        // The mock cluster does not apply transactions (aborted records would
                        // stay visible): the embedded demo runs at-least-once.
                        s.kafka.processing_guarantee =
                            driftwatch_worker::settings::ProcessingGuarantee::AtLeastOnce;
                    }
                    Some(s)
                }
                Err(e) => {
                    eprintln!("driftwatch: {e:#}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
        }
        _ => None,
    };
    if let (Some(k), Some(s)) = (&embedded, &demo) {
        if let Err(e) = k.create_topics(&demo::demo_topics(s)) {
            eprintln!("driftwatch: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    let result = runtime.block_on(execute(cli.command, settings, demo, log_file));
    // Clients first, then the embedded broker they talk to.
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(embedded);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("driftwatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(
    command: Command,
    settings: Settings,
    demo: Option<Settings>,
    log_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    match command {
        Command::Run { role } => run_role(settings, role).await,
        Command::Demo(args) => {
            let opts = demo::DemoOptions {
                traffic_time: args.traffic_time,
                event_span: Duration::from_secs(2 * 3600),
                predictions: args.predictions,
                seed: args.seed,
                live: !args.quiet,
                ui: args.ui,
                console_bind: Some(args.console_bind),
                log_file,
            };
            let real_broker = args.bootstrap_servers.is_some();
            let settings = anyhow::Context::context(demo, "the demo's settings were not prepared")?;
            if real_broker {
                demo::create_real_topics(&settings).await?;
            }
            let result = demo::run(settings.clone(), opts).await;
            if real_broker {
                // The run's topics are its own: leave the broker as it was.
                println!("deleting the run's topics");
                if let Err(e) = demo::delete_real_topics(&settings).await {
                    eprintln!("note: the demo's topics were not deleted: {e:#}");
                }
            }
            result.map(|_| ())
        }
        Command::CheckConfig { offline } => check_config::check_config(&settings, offline),
        Command::Bench(BenchArgs {
            what: Some(BenchCommand::State(args)),
            ..
        }) => bench::state::run(&args),
        Command::Bench(BenchArgs {
            what: Some(BenchCommand::Overload(args)),
            ..
        }) => bench::overload::run(&settings, args).await,
        Command::Bench(args) => {
            let mut settings = settings;
            if let Some(b) = args.bootstrap_servers {
                settings.kafka.bootstrap_servers = b;
            }
            if args.crc32_labels {
                settings.join.misrouted = driftwatch_worker::settings::MisroutedMode::Repartition;
            }
            let opts = bench::BenchOptions {
                predictions: args.predictions,
                partitions: args.partitions,
                latency_time: args.latency_time,
                latency_load: args.latency_load,
                seed: args.seed,
                crc32_labels: args.crc32_labels,
            };
            bench::run(&settings, opts).await
        }
        Command::Profile(args) => profile::run(&settings, args).await,
        Command::Compare(args) => compare::run(&args),
        Command::Backtest(args) => backtest::run(&settings, &args),
        Command::Generate(args) => generate::run(&settings, args, shutdown_signal()).await,
        Command::Topics(TopicsCommand::Create { partitions }) => {
            let specs: Vec<_> = driftwatch_worker::topics::required(&settings)
                .iter()
                .map(|t| t.spec(partitions))
                .collect();
            create_topics(&settings.kafka, &specs).await?;
            for s in &specs {
                println!("{} ({} partitions)", s.name, s.partitions);
            }
            Ok(())
        }
    }
}

async fn run_role(settings: Settings, role: Role) -> anyhow::Result<()> {
    use anyhow::Context;
    use driftwatch_worker::http::MetricsServer;
    use driftwatch_worker::pipeline::{self, Pipeline};
    use driftwatch_worker::prometheus::RenderOptions;
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let stop = |tx: &tokio::sync::broadcast::Sender<()>| {
        let mut rx = tx.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };
    // Reachability and credentials first: one clear error instead of a stage that retries.
    let kafka = settings.kafka.clone();
    tokio::task::spawn_blocking(move || {
        driftwatch_worker::clients::probe(&kafka, Duration::from_secs(10))
    })
    .await??;
    let role = match role {
        Role::Join => pipeline::Role::Join,
        Role::Monitor => pipeline::Role::Monitor,
        Role::Sources => pipeline::Role::Sources,
        Role::All => pipeline::Role::Both,
    };
    let pipeline = Pipeline::new(&settings, role)?;
    if settings.http.enabled {
        let handles = pipeline.stage_handles();
        let server = MetricsServer::bind(settings.http.bind)
            .await
            .with_context(|| format!("metrics endpoint on {}", settings.http.bind))?
            .with_options(RenderOptions {
                max_models: settings.http.max_exported_models,
            })
            .with_console({
                let handles = handles.clone();
                move || handles.console()
            });
        tracing::info!(bind = %settings.http.bind, "serving the console on /, /metrics, /healthz, /readyz");
        let stop_http = stop(&tx);
        tokio::spawn(async move {
            if let Err(e) = server.run(move || handles.status(), stop_http).await {
                tracing::error!(error = %e, "metrics endpoint stopped");
            }
        });
    }
    // Until a signal, or until a stage ends on its own: then the pipeline stops every stage
    // (the join first) and reports why.
    let result = pipeline
        .run(async {
            shutdown_signal().await;
            tracing::info!("signal received: stopping");
            let _ = tx.send(());
        })
        .await;
    let _ = tx.send(());
    Ok(result?)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
