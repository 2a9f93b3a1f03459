//! Typed, layered settings: defaults in code, then `maxwin.toml`, then `MAXWIN_*`
//! environment variables.
//!
//! Every key can be overridden from the environment: `MAXWIN_` followed by the key
//! path in capitals, with `__` between table and key, so `[llm] base_url` is
//! `MAXWIN_LLM__BASE_URL` and `database_url` is `MAXWIN_DATABASE_URL`. The plain
//! `DATABASE_URL` is honoured too, below `MAXWIN_DATABASE_URL`. Secrets are held
//! in [`maxwin_channel::Secret`], so formatting the settings never prints one.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::coach::CoachSettings;
use crate::llm::LlmSettings;
use crate::retrieval::RetrievalSettings;
use crate::server::ServerSettings;

/// The environment variable that names the config file.
pub const CONFIG_ENV: &str = "MAXWIN_CONFIG";
/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "MAXWIN_";
/// The config file read from the working directory when none is named.
pub const DEFAULT_CONFIG_FILE: &str = "maxwin.toml";

/// All settings of the `maxwin` binary.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The folder of Markdown corpus documents.
    pub corpus_dir: PathBuf,
    /// The folder of the on-disk search index, rebuilt when the corpus changes.
    pub index_dir: PathBuf,
    /// `sqlite://path` (created on first run) or `postgres://…`.
    pub database_url: String,
    pub log: LogSettings,
    pub coach: CoachSettings,
    pub llm: LlmSettings,
    pub retrieval: RetrievalSettings,
    pub server: ServerSettings,
    pub telegram: maxwin_telegram::TelegramSettings,
    pub wecom: maxwin_wecom::WecomSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            corpus_dir: PathBuf::from("corpus"),
            index_dir: PathBuf::from("data/index"),
            database_url: "sqlite://data/maxwin.db".to_string(),
            log: LogSettings::default(),
            coach: CoachSettings::default(),
            llm: LlmSettings::default(),
            retrieval: RetrievalSettings::default(),
            server: ServerSettings::default(),
            telegram: Default::default(),
            wecom: Default::default(),
        }
    }
}

/// Logging settings, the `[log]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// A `tracing` filter such as `info` or `maxwin_coach=debug`; `RUST_LOG` wins when set.
    pub level: String,
    /// Writes JSON lines instead of text.
    pub json: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".to_string(),
            json: false,
        }
    }
}

/// A config file or override that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "invalid settings: {0} (check maxwin.toml and MAXWIN_* variables; see maxwin.example.toml)"
    )]
    Invalid(String),
}

impl Settings {
    /// Loads settings from `path` (or `MAXWIN_CONFIG`, or `./maxwin.toml` when it
    /// exists), then applies the process environment.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let named = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from));
        let file = match named {
            Some(path) => Some(path),
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_FILE);
                default.exists().then_some(default)
            }
        };
        let text = match &file {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?,
            None => String::new(),
        };
        Self::from_sources(&text, file.as_deref(), &env)
    }

    /// Builds settings from config text and environment pairs; `path` names the
    /// file in errors.
    pub fn from_sources(
        text: &str,
        path: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Settings, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.map_or_else(|| PathBuf::from("<text>"), Path::to_path_buf),
            message: e.to_string(),
        })?;

        if let Some((_, url)) = env.iter().find(|(k, _)| k == "DATABASE_URL") {
            table.insert("database_url".into(), toml::Value::String(url.clone()));
        }
        for (key, value) in env {
            let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if key == CONFIG_ENV || rest.is_empty() {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            set_path(&mut table, &path, env_value(value))?;
        }

        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_string()))
    }
}

/// Reads an environment value as a TOML boolean or number when it looks like one,
/// otherwise as a string.
fn env_value(raw: &str) -> toml::Value {
    let trimmed = raw.trim();
    if let Ok(b) = trimmed.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = trimmed.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if trimmed.contains('.')
        && !trimmed.contains(['/', ':'])
        && let Ok(f) = trimmed.parse::<f64>()
    {
        return toml::Value::Float(f);
    }
    toml::Value::String(raw.to_string())
}

fn set_path(
    table: &mut toml::Table,
    path: &[String],
    value: toml::Value,
) -> Result<(), ConfigError> {
    let (last, parents) = path.split_last().expect("path has at least one part");
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| {
            ConfigError::Invalid(format!(
                "`{part}` is not a table, so {} cannot be set",
                path.join(".")
            ))
        })?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_file_or_env() {
        let settings = Settings::from_sources("", None, &[]).unwrap();
        assert_eq!(settings.database_url, "sqlite://data/maxwin.db");
        assert_eq!(settings.corpus_dir, PathBuf::from("corpus"));
    }

    #[test]
    fn env_overrides_file() {
        let text = "database_url = \"sqlite://a.db\"\n[coach]\npassages = 4\n";
        let settings = Settings::from_sources(
            text,
            None,
            &env(&[
                ("MAXWIN_COACH__PASSAGES", "9"),
                ("MAXWIN_DATABASE_URL", "sqlite://b.db"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.coach.passages, 9);
        assert_eq!(settings.database_url, "sqlite://b.db");
    }

    #[test]
    fn maxwin_database_url_beats_plain() {
        let settings = Settings::from_sources(
            "",
            None,
            &env(&[
                ("MAXWIN_DATABASE_URL", "sqlite://x.db"),
                ("DATABASE_URL", "postgres://h/db"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.database_url, "sqlite://x.db");
    }

    #[test]
    fn unknown_key_is_an_error() {
        let error = Settings::from_sources("databse_url = \"x\"", None, &[]).unwrap_err();
        assert!(error.to_string().contains("databse_url"), "{error}");
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../maxwin.example.toml");
        let settings = Settings::from_sources(text, None, &[]).unwrap();
        assert_eq!(settings.server.router.rate_limit.per_minute, 6);
        assert!(!settings.telegram.enabled);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let env = env(&[
            ("MAXWIN_LLM__BASE_URL", "http://127.0.0.1:9/v1"),
            ("MAXWIN_LLM__MODEL", "m"),
            ("MAXWIN_LLM__API_KEY", "sk-secret-llm-key"),
            ("MAXWIN_TELEGRAM__BOT_TOKEN", "123456:telegram-secret-token"),
        ]);
        let text = "[wecom.app]\ncorp_id = \"ww1\"\nagent_id = 1\nsecret = \"wecom-app-secret\"\n\
                    token = \"wecom-callback-token\"\nencoding_aes_key = \"aes-key-secret\"\n";
        let settings = Settings::from_sources(text, None, &env).unwrap();
        let printed = format!("{settings:?} {settings:#?}");
        for secret in [
            "sk-secret-llm-key",
            "telegram-secret-token",
            "wecom-app-secret",
            "wecom-callback-token",
            "aes-key-secret",
        ] {
            assert!(!printed.contains(secret), "settings printed {secret}");
        }
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn broken_file_names_the_path() {
        let error =
            Settings::from_sources("[coach", Some(Path::new("maxwin.toml")), &[]).unwrap_err();
        assert!(error.to_string().contains("maxwin.toml"), "{error}");
    }
}
