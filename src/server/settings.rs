//! Settings of the daemon and its router (the `[server]` config section).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

/// Settings of `maxwin serve`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    /// Address of the HTTP listener for webhooks, health and metrics.
    pub bind: SocketAddr,
    /// Seconds that answers in flight get to finish after SIGTERM or SIGINT.
    pub shutdown_grace_secs: u64,
    /// Routing rules; their keys sit directly in `[server]`.
    #[serde(flatten)]
    pub router: RouterSettings,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            shutdown_grace_secs: 20,
            router: RouterSettings::default(),
        }
    }
}

impl ServerSettings {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// Which messages the router answers, and how fast.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RouterSettings {
    /// Tenants (Slack team, WeCom corp, Telegram bot id) the bot serves; empty allows all.
    /// An entry is either the bare id or `platform:id`, e.g. `slack:T0123`.
    pub allowed_tenants: Vec<String>,
    /// Conversations (group or direct chat ids) the bot serves; empty allows all.
    /// Same entry format as `allowed_tenants`; applies to direct chats too.
    pub allowed_chats: Vec<String>,
    pub rate_limit: RateLimitSettings,
    /// Messages that may wait behind the answer in progress in one conversation;
    /// a message past this gets a notice asking the user to send it again later.
    pub max_queued_per_conversation: usize,
    /// Seconds one answer may take before the router gives up and apologises.
    pub answer_timeout_secs: u64,
    /// Maximum number of joined threads (where the bot answers without a mention)
    /// kept in memory; the least recently used are dropped first.
    pub joined_threads_capacity: usize,
    /// Seconds after the bot's last answer in a thread during which it stays joined.
    pub joined_thread_ttl_secs: u64,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            allowed_tenants: Vec::new(),
            allowed_chats: Vec::new(),
            rate_limit: RateLimitSettings::default(),
            max_queued_per_conversation: 5,
            answer_timeout_secs: 180,
            joined_threads_capacity: 10_000,
            joined_thread_ttl_secs: 7 * 24 * 3600,
        }
    }
}

/// A token bucket per user: `burst` messages at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    /// Sustained messages per minute per user; 0 turns the limit off.
    pub per_minute: u32,
    /// Messages a user may send in a quick burst.
    pub burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            per_minute: 6,
            burst: 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_from_empty_toml() {
        let settings: ServerSettings = toml::from_str("").unwrap();

        assert_eq!(settings, ServerSettings::default());
        assert_eq!(settings.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.shutdown_grace(), Duration::from_secs(20));
    }

    #[test]
    fn settings_read_flattened_router_keys() {
        let text = r#"
            bind = "0.0.0.0:9000"
            shutdown_grace_secs = 5
            allowed_tenants = ["slack:T1", "T2"]
            max_queued_per_conversation = 2
            [rate_limit]
            per_minute = 10
        "#;
        let settings: ServerSettings = toml::from_str(text).unwrap();

        assert_eq!(settings.bind.port(), 9000);
        assert_eq!(settings.shutdown_grace_secs, 5);
        assert_eq!(settings.router.allowed_tenants, ["slack:T1", "T2"]);
        assert_eq!(settings.router.max_queued_per_conversation, 2);
        assert_eq!(settings.router.rate_limit.per_minute, 10);
        assert_eq!(settings.router.rate_limit.burst, 3);
    }
}
