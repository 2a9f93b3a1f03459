//! Telegram adapter for Max-Win-Win Coach, built on teloxide.
//!
//! The adapter receives updates by long polling ([`run_polling`]) or through a
//! webhook ([`webhook_router`] after [`register_webhook`]), turns messages into
//! [`maxwin_channel::Inbound`] and hands them to the core's [`maxwin_channel::Handler`]
//! with a [`TelegramSink`]. The sink shows a typing indicator, a preview message edited
//! at most once per `edit_interval_ms` per chat, and then the final card in HTML with
//! 👍 / 👎 and "More questions" buttons.
//!
//! In groups the adapter hands over every text message it receives, also those that
//! neither mention the bot nor reply to it (`mentions_bot` and `replies_to_bot` are
//! false), because the core's router decides whether to answer, for example in a
//! thread the bot already takes part in. With privacy mode on, Telegram itself only
//! delivers commands, mentions and replies to the bot.

pub mod html;
pub mod inbound;

mod dispatch;
mod settings;
mod sink;
mod throttle;

use std::future::Future;
use std::sync::Arc;

use maxwin_channel::Handler;

pub use dispatch::{register_webhook, run_polling, webhook_router};
pub use inbound::BotIdentity;
pub use settings::{TelegramError, TelegramMode, TelegramSettings};
pub use sink::{TelegramClient, TelegramSink, card_keyboard};

/// Runs the adapter in the configured mode until `shutdown` completes.
///
/// Polling mode runs [`run_polling`]. Webhook mode registers the webhook and then
/// waits for `shutdown`; the daemon serves [`webhook_router`] on its HTTP server.
pub async fn run(
    settings: TelegramSettings,
    handler: Arc<dyn Handler>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), TelegramError> {
    match settings.mode {
        TelegramMode::Polling => run_polling(settings, handler, shutdown).await,
        TelegramMode::Webhook => {
            register_webhook(&settings).await?;
            shutdown.await;
            Ok(())
        }
    }
}
