//! The kill switch: stop a key, a user, a team or a model at once, or lock the whole gateway
//! down, with a reason the refused clients read. The list lives in the store (it survives
//! restarts and every replica reads the same one); each process keeps a snapshot that requests
//! check without I/O, re-read when news arrives over Redis ([`news`]) and, as a safety net,
//! on a timer.
//!
//! A killed key, user or team gets 403 with its own code (`key_killed`, `user_killed`,
//! `team_killed`, `model_killed`) and the reason; a lock-down refuses every request with 503
//! `gateway_locked_down`. Unlike `keys revoke`, a kill is meant to be lifted (`unkill`).

pub mod news;

use crate::auth::Caller;
use arc_swap::ArcSwap;
use news::{News, NewsError};
use portcullis_core::ApiError;
use portcullis_store::{Kill, KillScope, Store, StoreError};
use std::collections::HashMap;
use std::sync::Arc;

/// The target of a lock-down ([`KillScope::All`]).
pub const EVERYTHING: &str = "*";

/// The kills in force, as one process last read them.
#[derive(Debug, Default)]
pub struct KillList {
    lockdown: Option<Kill>,
    by_target: HashMap<(KillScope, String), Kill>,
}

impl KillList {
    /// The list made of `kills`.
    pub fn new(kills: Vec<Kill>) -> KillList {
        let mut list = KillList::default();
        for k in kills {
            if k.scope == KillScope::All {
                list.lockdown = Some(k);
            } else {
                list.by_target.insert((k.scope, k.target.clone()), k);
            }
        }
        list
    }

    /// The refusal for every request while locked down.
    pub fn lockdown(&self) -> Option<ApiError> {
        self.lockdown.as_ref().map(|k| {
            ApiError::unavailable(
                "gateway_locked_down",
                format!(
                    "This gateway is locked down by its operators and refuses every request{}. \
                     Try again once the lock-down is lifted.",
                    reason_clause(&k.reason)
                ),
            )
        })
    }

    /// The refusal for a caller whose key, user or team is killed.
    pub fn caller(&self, c: &Caller) -> Option<ApiError> {
        let candidates = [
            (KillScope::Key, Some(c.key_id.as_str())),
            (KillScope::User, Some(c.user.as_str())),
            (KillScope::Team, c.team.as_deref()),
        ];
        candidates
            .into_iter()
            .find_map(|(scope, target)| self.refusal(scope, target?))
    }

    /// The refusal for a request to a killed model.
    pub fn model(&self, model: &str) -> Option<ApiError> {
        self.refusal(KillScope::Model, model)
            .map(|e| e.with_param("model"))
    }

    fn refusal(&self, scope: KillScope, target: &str) -> Option<ApiError> {
        let k = self.by_target.get(&(scope, target.to_owned()))?;
        let what = match scope {
            KillScope::Key => "gateway key",
            KillScope::User => "user",
            KillScope::Team => "team",
            KillScope::Model | KillScope::All => "model",
        };
        Some(ApiError::policy(
            &format!("{scope}_killed"),
            format!(
                "The {what} '{target}' has been stopped by this gateway's operators{}. \
                 Ask them to lift it ('portcullis unkill {scope} {target}').",
                reason_clause(&k.reason)
            ),
        ))
    }
}

fn reason_clause(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" (reason: {reason})")
    }
}

/// Why a kill could not be changed or read.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    #[error("the kill list in the store: {0}")]
    Store(#[from] StoreError),
    #[error("'{0}' is not a kill scope: use key, user, team, model (with an id) or all (without)")]
    Scope(String),
    #[error("kill {0} needs an id (the key id, user, team or model name)")]
    MissingTarget(KillScope),
    #[error("kill all takes no id")]
    TargetOnAll,
    #[error(
        "saved in the store, but other replicas were not told at once ({0}); they pick it up on their next re-read"
    )]
    News(#[from] NewsError),
}

/// Parses a scope and an optional target as typed (`key key_1`, `all`).
pub fn parse_target(scope: &str, target: Option<&str>) -> Result<(KillScope, String), KillError> {
    let scope = KillScope::parse(scope).ok_or_else(|| KillError::Scope(scope.to_owned()))?;
    match (scope, target.map(str::trim).filter(|t| !t.is_empty())) {
        (KillScope::All, None) => Ok((scope, EVERYTHING.to_owned())),
        (KillScope::All, Some(_)) => Err(KillError::TargetOnAll),
        (_, None) => Err(KillError::MissingTarget(scope)),
        (_, Some(t)) => Ok((scope, t.to_owned())),
    }
}

/// The kill switch of one process: the store's list, a snapshot of it for requests, and the
/// news channel that tells the other replicas.
pub struct KillSwitch {
    store: Store,
    news: Option<News>,
    list: ArcSwap<KillList>,
}

impl KillSwitch {
    /// A switch over `store`, telling replicas through `news` (if any). Starts empty: call
    /// [`KillSwitch::refresh`] before serving.
    pub fn new(store: Store, news: Option<News>) -> KillSwitch {
        KillSwitch {
            store,
            news,
            list: ArcSwap::from_pointee(KillList::default()),
        }
    }

    /// The snapshot requests check.
    pub fn current(&self) -> Arc<KillList> {
        self.list.load_full()
    }

    /// The news channel, if replicas share Redis.
    pub fn news(&self) -> Option<&News> {
        self.news.as_ref()
    }

    /// The store the list lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Re-reads the list from the store.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let kills = self.store.kills().await?;
        self.list.store(Arc::new(KillList::new(kills)));
        Ok(())
    }

    /// Stops `scope`/`target`, here at once and on every replica as soon as they hear.
    pub async fn kill(
        &self,
        scope: KillScope,
        target: &str,
        reason: &str,
    ) -> Result<Kill, KillError> {
        let kill = self.store.kill(scope, target, reason).await?;
        self.changed().await?;
        tracing::warn!(scope = %scope, target, reason, "kill switch: stopped");
        Ok(kill)
    }

    /// Lifts a kill; whether there was one.
    pub async fn unkill(&self, scope: KillScope, target: &str) -> Result<bool, KillError> {
        let was = self.store.unkill(scope, target).await?;
        self.changed().await?;
        tracing::warn!(scope = %scope, target, "kill switch: lifted");
        Ok(was)
    }

    async fn changed(&self) -> Result<(), KillError> {
        self.refresh().await?;
        if let Some(n) = &self.news {
            n.publish(&news::Event::Kills).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kill(scope: KillScope, target: &str, reason: &str) -> Kill {
        Kill {
            scope,
            target: target.into(),
            reason: reason.into(),
            created_ms: 0,
        }
    }

    fn caller(key: &str, user: &str, team: Option<&str>) -> Caller {
        Caller {
            key_id: key.into(),
            user: user.into(),
            team: team.map(Into::into),
            service: false,
            limits: serde_json::Value::Null,
        }
    }

    #[test]
    fn each_scope_refuses_only_its_target_with_its_code_and_reason() {
        let list = KillList::new(vec![
            kill(KillScope::Key, "key_1", "leaked on a forum"),
            kill(KillScope::User, "mallory", ""),
            kill(KillScope::Team, "red", "runaway agent"),
            kill(KillScope::Model, "gpt-4o", "provider incident"),
        ]);
        assert!(list.lockdown().is_none());
        let e = list.caller(&caller("key_1", "alice", None)).unwrap();
        assert_eq!((e.status, e.code.as_deref()), (403, Some("key_killed")));
        assert!(e.message.contains("leaked on a forum"), "{}", e.message);
        let e = list.caller(&caller("key_2", "mallory", None)).unwrap();
        assert_eq!(e.code.as_deref(), Some("user_killed"));
        let e = list.caller(&caller("key_2", "bob", Some("red"))).unwrap();
        assert_eq!(e.code.as_deref(), Some("team_killed"));
        assert!(list.caller(&caller("key_2", "bob", Some("blue"))).is_none());
        let e = list.model("gpt-4o").unwrap();
        assert_eq!(
            (e.code.as_deref(), e.param.as_deref()),
            (Some("model_killed"), Some("model"))
        );
        assert!(list.model("gpt-4o-mini").is_none());
    }

    #[test]
    fn a_lockdown_refuses_with_503_and_its_reason() {
        let list = KillList::new(vec![kill(KillScope::All, EVERYTHING, "incident 7")]);
        let e = list.lockdown().unwrap();
        assert_eq!(
            (e.status, e.code.as_deref()),
            (503, Some("gateway_locked_down"))
        );
        assert!(e.message.contains("incident 7"));
    }

    #[test]
    fn targets_are_parsed_as_typed() {
        assert_eq!(
            parse_target("all", None).unwrap(),
            (KillScope::All, "*".into())
        );
        assert_eq!(
            parse_target("key", Some("key_1")).unwrap(),
            (KillScope::Key, "key_1".into())
        );
        assert!(matches!(
            parse_target("user", None),
            Err(KillError::MissingTarget(KillScope::User))
        ));
        assert!(matches!(
            parse_target("all", Some("x")),
            Err(KillError::TargetOnAll)
        ));
        assert!(matches!(
            parse_target("planet", Some("x")),
            Err(KillError::Scope(_))
        ));
    }
}
