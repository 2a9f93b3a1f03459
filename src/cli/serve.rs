//! `maxwin serve`: the daemon with every enabled adapter.

use std::sync::Arc;

use maxwin_channel::Handler;
use tracing::info;

use crate::coach::ports::StoreLedger;
use crate::config::Settings;
use crate::server::{
    AdapterLoop, DaemonParts, Metrics, Readiness, Router, run_daemon, shutdown_signal,
};

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let (coach, _knowledge) = crate::app::build_coach(&settings).await?;
    let ledger = Arc::new(StoreLedger(coach.store().clone()));
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::new());
    readiness.set_index_ready(true);

    let router = Router::new(Arc::new(coach), ledger, metrics, &settings.server.router);
    let handler: Arc<dyn Handler> = Arc::new(router.clone());
    let mut parts = DaemonParts::new(router, readiness);

    let telegram = settings.telegram.clone();
    if telegram.enabled {
        match telegram.mode {
            maxwin_telegram::TelegramMode::Polling => {
                let handler = handler.clone();
                parts = parts.with_loop(AdapterLoop::new("telegram", move |token| async move {
                    maxwin_telegram::run_polling(telegram, handler, token.cancelled_owned())
                        .await
                        .map_err(anyhow::Error::from)
                }));
            }
            maxwin_telegram::TelegramMode::Webhook => {
                parts =
                    parts.with_routes(maxwin_telegram::webhook_router(&telegram, handler.clone())?);
                maxwin_telegram::register_webhook(&telegram).await?;
            }
        }
        info!(mode = ?settings.telegram.mode, "Telegram adapter enabled");
    }

    let wecom = settings.wecom.clone();
    if wecom.app.is_some() || wecom.bot.is_some() {
        parts = parts.with_routes(maxwin_wecom::router(&wecom, handler.clone())?);
        let long_connection = wecom
            .bot
            .as_ref()
            .is_some_and(|bot| bot.mode == maxwin_wecom::BotMode::LongConnection);
        if long_connection {
            let handler = handler.clone();
            parts = parts.with_loop(AdapterLoop::new("wecom", move |token| async move {
                maxwin_wecom::run(wecom, handler, token.cancelled_owned())
                    .await
                    .map_err(anyhow::Error::from)
            }));
        }
        info!(
            app = settings.wecom.app.is_some(),
            bot = settings.wecom.bot.is_some(),
            "WeCom adapter enabled"
        );
    }

    info!(bind = %settings.server.bind, "maxwin serve starting");
    run_daemon(parts, settings.server.clone(), shutdown_signal()).await
}
