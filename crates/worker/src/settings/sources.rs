//! `[[sources]]`: the model-server topics of the sources stage ([`crate::sources`]), and the
//! names that stage derives from the join's group.

use super::Settings;
use crate::error::WorkerError;

impl Settings {
    /// The sources stage's consumer group: `<kafka.join_group_id>-sources`.
    pub fn sources_group_id(&self) -> String {
        format!("{}-sources", self.kafka.join_group_id)
    }

    /// The sources stage's changelog (exactly-once): `<sources group>-changelog`, one
    /// partition, compacted.
    pub fn sources_changelog_topic(&self) -> String {
        format!("{}-changelog", self.sources_group_id())
    }

    /// Each entry valid, names unique, and no source topic that driftwatch itself writes.
    pub(super) fn validate_sources(&self) -> Result<(), WorkerError> {
        let bad = |m: String| Err(WorkerError::Config(m));
        let t = &self.topics;
        let own = [
            &t.predictions,
            &t.ground_truth,
            &t.model_partials,
            &t.dead_letter,
            &t.drift_events,
            &t.retrain_events,
            &t.model_metrics,
            &t.model_references,
        ];
        let mut names = std::collections::BTreeSet::new();
        for s in &self.sources {
            s.validate().map_err(WorkerError::Config)?;
            if !names.insert(s.name.as_str()) {
                return bad(format!("sources: the name `{}` is used twice", s.name));
            }
            let changelog = self.sources_changelog_topic();
            for topic in own.into_iter().chain([&changelog]) {
                if s.reads(topic) {
                    return bad(format!(
                        "sources `{}` would read `{topic}`, a topic driftwatch writes",
                        s.name
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_source(toml_text: &str) -> Result<Settings, String> {
        let s: Settings = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        s.validate().map_err(|e| e.to_string())?;
        Ok(s)
    }

    const KSERVE: &str = r#"
[kafka]
bootstrap_servers = "localhost:9092"
[[sources]]
name = "iris"
[sources.kserve]
topics = ["kserve-logger"]
[sources.mapping]
model_id = { from = "fixed", value = "iris" }
model_version = { from = "fixed", value = "1" }
prediction = { tensor = "predict", as = "label" }
"#;

    #[test]
    fn sources_are_read_checked_and_named_after_the_join_group() {
        let s = with_source(KSERVE).unwrap();
        assert_eq!(s.sources.len(), 1);
        assert_eq!(s.sources_group_id(), "driftwatch-join-sources");
        assert_eq!(
            s.sources_changelog_topic(),
            "driftwatch-join-sources-changelog"
        );
        let twice = format!("{KSERVE}{}", &KSERVE[KSERVE.find("[[sources]]").unwrap()..]);
        assert!(with_source(&twice).unwrap_err().contains("twice"));
        let own = KSERVE.replace("kserve-logger", "predictions");
        assert!(with_source(&own).unwrap_err().contains("driftwatch writes"));
        let unknown = KSERVE.replace("[sources.kserve]", "colour = 1\n[sources.kserve]");
        assert!(with_source(&unknown).is_err());
    }
}
