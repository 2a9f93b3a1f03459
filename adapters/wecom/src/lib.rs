//! WeChat Work (企业微信, WeCom) adapter for the coach.
//!
//! - [`app`]: the self-built app (自建应用). Encrypted XML callbacks are verified,
//!   acknowledged at once with an empty 200 and handed to the core; the answer goes
//!   out through `message/send`, paced under the per-member quota.
//! - [`bot`]: the AI robot (智能机器人) in callback mode, with pulled streaming.
//! - [`longconn`]: the AI robot over a WebSocket long connection, with pushed streaming.
//! - [`webhook`]: the group webhook robot (群机器人) for broadcasts.
//! - [`crypto`]: the signature and AES envelope shared by the callbacks.
//!
//! Every client takes a configurable API base URL (default
//! `https://qyapi.weixin.qq.com`), so tests run against loopback mocks.

pub mod api;
pub mod app;
pub mod bot;
pub mod crypto;
pub mod longconn;
pub mod mention;
pub mod pacer;
pub mod render;
pub mod webhook;
pub mod xml;

use std::sync::Arc;

use axum::Router;
use serde::Deserialize;

use maxwin_channel::Handler;

pub use app::{AppSettings, ConfigError, WecomAppSink, app_router};
pub use bot::{BotMode, BotSettings, StreamStore, WecomBotSink, bot_router};
pub use crypto::{CryptoError, WecomCrypto};
pub use webhook::WebhookRobot;

/// The WeCom settings, config section `[wecom]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WecomSettings {
    /// The self-built app; `None` when not configured.
    pub app: Option<AppSettings>,
    /// The AI robot; `None` when not configured.
    pub bot: Option<BotSettings>,
}

/// Runs the AI robot's long connection until `shutdown` resolves; returns at
/// once when the robot is not configured for that mode.
pub async fn run(
    settings: WecomSettings,
    handler: Arc<dyn Handler>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), longconn::LongConnError> {
    match settings.bot {
        Some(bot) if bot.mode == BotMode::LongConnection => {
            longconn::run(bot, handler, shutdown).await
        }
        _ => Ok(()),
    }
}

/// Builds the callback routes of every configured WeCom entry point: the app,
/// and the AI robot in callback mode. An empty router when neither is configured.
pub fn router(settings: &WecomSettings, handler: Arc<dyn Handler>) -> Result<Router, ConfigError> {
    let mut router = Router::new();
    if let Some(app) = &settings.app {
        router = router.merge(app_router(app, handler.clone())?);
    }
    if let Some(bot) = &settings.bot {
        match bot.mode {
            BotMode::Callback => router = router.merge(bot_router(bot, handler)?),
            // Served by `longconn::run`, which needs no route.
            BotMode::LongConnection => {}
        }
    }
    Ok(router)
}
