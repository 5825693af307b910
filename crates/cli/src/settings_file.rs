//! Loads [`Settings`] from a TOML file and `DRIFTWATCH__…` environment variables.

use std::path::Path;

use anyhow::Context;
use driftwatch_worker::settings::Settings;

/// Reads the file (if given), applies environment overrides, validates across fields.
pub fn load(path: Option<&Path>) -> anyhow::Result<Settings> {
    let mut builder = config::Config::builder();
    if let Some(p) = path {
        if !p.exists() {
            anyhow::bail!("configuration file {} does not exist", p.display());
        }
        builder = builder.add_source(config::File::from(p).format(config::FileFormat::Toml));
    }
    builder = builder.add_source(
        config::Environment::with_prefix("DRIFTWATCH")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true),
    );
    let where_ = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "environment".to_string());
    let settings: Settings = builder
        .build()
        .and_then(|c| c.try_deserialize())
        .with_context(|| format!("invalid configuration ({where_})"))?;
    settings
        .validate()
        .with_context(|| format!("invalid configuration ({where_})"))?;
    Ok(settings)
}
