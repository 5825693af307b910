//! `driftwatch`: watch ML models in production from Kafka.
//!
//! Exit codes: 0 success; 1 runtime failure (broker, topics, I/O); 2 bad usage or invalid
//! configuration.

mod settings_file;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use driftwatch_worker::clients::{create_topics, TopicSpec};
use driftwatch_worker::settings::Settings;
use driftwatch_worker::topics::TopicChecker;

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
    /// Run a pipeline stage.
    ///
    /// Example: driftwatch run --role join -c deploy/driftwatch.example.toml
    Run {
        /// Which stage to run.
        #[arg(long, value_enum, default_value_t = Role::Join)]
        role: Role,
    },
    /// Validate the configuration and the topics it names against the broker; print the plan.
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
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Role {
    /// The join stage: predictions ⋈ ground truth → model partials.
    Join,
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
    init_logging(cli.log_format);
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
    match runtime.block_on(execute(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("driftwatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Run { role: Role::Join } => {
            driftwatch_worker::join_stage::run(settings, shutdown_signal()).await?;
            Ok(())
        }
        Command::CheckConfig { offline } => check_config(&settings, offline),
        Command::Topics(TopicsCommand::Create { partitions }) => {
            let specs = topic_specs(&settings, partitions);
            create_topics(&settings.kafka, &specs).await?;
            for s in &specs {
                println!("{} ({} partitions)", s.name, s.partitions);
            }
            Ok(())
        }
    }
}

fn topic_specs(settings: &Settings, partitions: i32) -> Vec<TopicSpec> {
    let t = &settings.topics;
    let spec = |name: &str, partitions: i32| TopicSpec {
        name: name.to_string(),
        partitions,
        configs: vec![],
    };
    vec![
        spec(&t.predictions, partitions),
        spec(&t.ground_truth, partitions),
        spec(&t.model_partials, partitions),
        spec(&t.dead_letter, 1),
        spec(&t.drift_events, 1),
        spec(&t.retrain_events, 1),
        spec(&t.model_metrics, 1),
    ]
}

fn check_config(settings: &Settings, offline: bool) -> anyhow::Result<()> {
    let t = &settings.topics;
    println!("configuration is valid");
    println!("  brokers:       {}", settings.kafka.bootstrap_servers);
    println!("  join group:    {}", settings.kafka.join_group_id);
    println!("  inputs:        {} + {}", t.predictions, t.ground_truth);
    println!("  partials to:   {}", t.model_partials);
    println!("  dead letters:  {}", t.dead_letter);
    println!(
        "  label timeout: {:?} (orphan timeout {:?})",
        settings.join.label_timeout, settings.join.orphan_timeout
    );
    if offline {
        return Ok(());
    }
    let checker = TopicChecker::new(&settings.kafka, Duration::from_secs(10))?;
    let n = checker.copartitioned(&t.predictions, &t.ground_truth)?;
    println!("  inputs are co-partitioned: {n} partitions each; up to {n} join workers get work");
    for out in [&t.model_partials, &t.dead_letter] {
        let p = checker.partitions(out)?;
        println!("  output {out}: {p} partitions");
    }
    Ok(())
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

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("DRIFTWATCH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
