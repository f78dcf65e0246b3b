//! What the Lua scripts are sent and what they answer: bucket kind codes, numbers in a reply,
//! a refusal read back from the admission script, and the settlement script's arguments.

use super::RedisLimiter;
use crate::limiter::{
    BucketSpec, Decision, Headroom, Kind, LimitError, Refusal, Reservation, Room, settle_delta,
};
use crate::window::wait_for;
use redis::Value;
use std::time::Duration;

pub(super) fn kind_code(k: Kind) -> &'static str {
    match k {
        Kind::Requests => "r",
        Kind::Tokens => "t",
        Kind::Parallel => "p",
    }
}

pub(super) fn num(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .map_or(0, |f| f as i64),
        Value::SimpleString(s) => s.parse::<f64>().map_or(0, |f| f as i64),
        _ => 0,
    }
}

pub(super) fn bad_reply() -> LimitError {
    LimitError::Unavailable("unexpected reply from the Redis limit script".into())
}

impl RedisLimiter {
    pub(super) fn refusal(specs: &[BucketSpec], reply: &[Value]) -> Result<Decision, LimitError> {
        let now = reply.get(1).map(num).ok_or_else(bad_reply)?;
        let fail = reply.get(2).map(num).ok_or_else(bad_reply)?;
        let s = specs
            .get((fail as usize).wrapping_sub(1))
            .ok_or_else(bad_reply)?;
        let mut head = Headroom::default();
        let mut used_fail = 0;
        for (i, spec) in specs.iter().enumerate() {
            let used = reply.get(3 + 2 * i).map(num).ok_or_else(bad_reply)?.max(0) as u64;
            let latest = reply.get(4 + 2 * i).map(num).filter(|l| *l >= 0);
            if i + 1 == fail as usize {
                used_fail = used;
            }
            if spec.limit.kind() != Kind::Parallel {
                head.note(
                    spec.limit.kind(),
                    Room {
                        limit: spec.capacity,
                        remaining: spec.capacity.saturating_sub(used),
                        reset: spec.limit.slicing().reset(latest, now),
                    },
                );
            }
        }
        let wait = match s.limit.kind() {
            Kind::Parallel => Some(Duration::from_secs(1)),
            Kind::Requests | Kind::Tokens => {
                let slices: Vec<(i64, u64)> = reply
                    .get(3 + 2 * specs.len()..)
                    .unwrap_or_default()
                    .chunks_exact(2)
                    .map(|p| (num(&p[0]), num(&p[1]).max(0) as u64))
                    .collect();
                wait_for(
                    s.limit.slicing(),
                    &slices,
                    used_fail,
                    s.capacity,
                    s.cost,
                    now,
                )
            }
        };
        Ok(Decision::Refused(Refusal {
            bucket: s.key.clone(),
            scope: s.scope.clone(),
            limit: s.limit,
            kind: s.limit.kind(),
            capacity: s.capacity,
            requested: s.cost,
            too_large: wait.is_none(),
            retry_after: wait.unwrap_or(s.limit.window()),
            headroom: head,
        }))
    }

    pub(super) fn settle_call(
        &self,
        r: &Reservation,
        actual_tokens: u64,
    ) -> (Vec<String>, Vec<String>) {
        let delta = settle_delta(actual_tokens, r.tokens);
        let mut keys = vec![self.marker_key(&r.id)];
        let mut args = vec![
            r.buckets.len().to_string(),
            r.id.clone(),
            r.at_ms.to_string(),
        ];
        for s in &r.buckets {
            keys.push(self.bucket_key(s));
            let slicing = s.limit.slicing();
            let d = if s.limit.kind() == Kind::Tokens {
                delta
            } else {
                0
            };
            args.extend([
                kind_code(s.limit.kind()).to_owned(),
                slicing.g_ms.to_string(),
                slicing.n.to_string(),
                d.to_string(),
            ]);
        }
        (keys, args)
    }
}
