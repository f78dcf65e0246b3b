//! News between replicas over Redis pub/sub: "the kill list changed" and "key K changed
//! (revoked, rotated)". A replica re-reads the kill list or forgets key K from its
//! authentication cache when it hears, so a change made anywhere takes effect everywhere
//! within a second. Pub/sub delivers only to those listening, so on every (re)connect a
//! replica re-reads the list and forgets every cached key; a slow timer re-reads the list
//! besides, in case a message is lost some other way.
//!
//! Channel: `{limits.prefix}:news`. Messages: `kills` or `key:{id}`.

use super::KillSwitch;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for Redis when publishing or (re)connecting.
const TIMEOUT: Duration = Duration::from_secs(2);

/// How often an idle subscription checks that Redis still answers.
const PING_EVERY: Duration = Duration::from_secs(5);

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Why news could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NewsError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The kill list: re-read it.
    Kills,
    /// A key was revoked or rotated: forget what the cache holds for it.
    Key(String),
}

impl Event {
    fn encode(&self) -> String {
        match self {
            Event::Kills => "kills".to_owned(),
            Event::Key(id) => format!("key:{id}"),
        }
    }

    fn decode(s: &str) -> Option<Event> {
        match s {
            "kills" => Some(Event::Kills),
            _ => s
                .strip_prefix("key:")
                .filter(|id| !id.is_empty())
                .map(|id| Event::Key(id.to_owned())),
        }
    }
}

/// The news channel of the replicas sharing one Redis (and prefix).
#[derive(Clone)]
pub struct News {
    client: redis::Client,
    channel: String,
}

impl News {
    /// The channel under `prefix` on the Redis at `url`, or `None` when limits are not kept
    /// in Redis (one process: nothing to tell).
    pub fn from_limits(url: &str, prefix: &str) -> Result<Option<News>, NewsError> {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Ok(None);
        }
        Ok(Some(News {
            client: redis::Client::open(url)?,
            channel: format!("{prefix}:news"),
        }))
    }

    /// Tells every listening replica about `event`.
    pub async fn publish(&self, event: &Event) -> Result<(), NewsError> {
        let send = async {
            let mut con = self.client.get_multiplexed_async_connection().await?;
            redis::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(event.encode())
                .query_async::<i64>(&mut con)
                .await
        };
        tokio::time::timeout(TIMEOUT, send)
            .await
            .map_err(|_| NewsError::Timeout(TIMEOUT))??;
        Ok(())
    }

    /// Listens for news for `switch` until the process ends, reconnecting as needed.
    pub async fn listen(self, switch: Arc<KillSwitch>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.subscribed(&switch).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, "kill switch news: connection lost; reconnecting")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One subscription: catch up, then apply news until the connection fails.
    async fn subscribed(&self, switch: &KillSwitch) -> Result<(), NewsError> {
        let (mut sink, mut stream) = tokio::time::timeout(TIMEOUT, async {
            let mut ps = self.client.get_async_pubsub().await?;
            ps.subscribe(&self.channel).await?;
            Ok::<_, NewsError>(ps.split())
        })
        .await
        .map_err(|_| NewsError::Timeout(TIMEOUT))??;
        // Whatever was said while we were not listening is lost: catch up from the store.
        switch.store().forget_all_keys();
        if let Err(e) = switch.refresh().await {
            tracing::warn!(error = %e, "kill switch: cannot re-read the kill list");
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { return Ok(()) };
                    let text = String::from_utf8_lossy(msg.get_payload_bytes());
                    apply(switch, Event::decode(&text)).await;
                }
                _ = ping.tick() => {
                    tokio::time::timeout(TIMEOUT, sink.ping::<redis::Value>())
                        .await
                        .map_err(|_| NewsError::Timeout(TIMEOUT))??;
                }
            }
        }
    }
}

async fn apply(switch: &KillSwitch, event: Option<Event>) {
    match event {
        Some(Event::Kills) => {
            if let Err(e) = switch.refresh().await {
                tracing::warn!(error = %e, "kill switch: cannot re-read the kill list");
            }
        }
        Some(Event::Key(id)) => switch.store().forget_key(&id),
        None => tracing::debug!("kill switch news: unknown message ignored"),
    }
}

/// Keeps `switch` current until the process ends: news over Redis when configured, and a
/// re-read of the list every `every` (the only way without Redis; a safety net with it).
pub fn spawn(switch: Arc<KillSwitch>, every: Duration) {
    if let Some(news) = switch.news().cloned() {
        tokio::spawn(news.listen(switch.clone()));
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = switch.refresh().await {
                tracing::warn!(error = %e, "kill switch: cannot re-read the kill list");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_strangers_are_ignored() {
        for e in [Event::Kills, Event::Key("key_1".into())] {
            assert_eq!(Event::decode(&e.encode()), Some(e));
        }
        assert_eq!(Event::decode("key:"), None);
        assert_eq!(Event::decode("hello"), None);
    }

    #[test]
    fn news_needs_redis() {
        assert!(News::from_limits("memory://", "p").unwrap().is_none());
        let n = News::from_limits("redis://127.0.0.1:6379/0", "gw1")
            .unwrap()
            .unwrap();
        assert_eq!(n.channel, "gw1:news");
    }
}
