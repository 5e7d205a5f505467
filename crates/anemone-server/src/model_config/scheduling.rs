//! Triton's scheduling fields of a config (`max_batch_size`,
//! `dynamic_batching`, `sequence_batching`, `instance_group`) as the
//! runtime's typed settings.

use crate::proto::model_config::SchedulingChoice;
use crate::proto::model_instance_group::Kind as GroupKind;
use crate::proto::model_queue_policy::TimeoutAction as ProtoTimeoutAction;
use crate::proto::{ModelConfig, ModelQueuePolicy};
use anemone_runtime::{
    Batching, InstanceGroup, InstanceKind, QueuePolicy, QueueSettings, TimeoutAction,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// What a config says about batching, queueing and instances.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedulerConfig {
    /// `max_batch_size` when positive.
    pub max_batch_size: Option<usize>,
    /// `dynamic_batching`'s batching settings.
    pub batching: Option<Batching>,
    /// `dynamic_batching`'s queue settings.
    pub queue: Option<QueueSettings>,
    /// `instance_group`, one entry per group.
    pub instance_groups: Vec<InstanceGroup>,
    /// `sequence_batching`'s settings (its batching is in `batching`).
    pub sequence: Option<anemone_runtime::SequenceSettings>,
}

/// An instance group's `rate_limiter`, used when the server runs with
/// `--rate-limit execution_count`. A resource needs a name.
fn rate_limit(
    limiter: Option<&crate::proto::ModelRateLimiter>,
    group: usize,
) -> Result<Option<anemone_runtime::RateLimit>, String> {
    let Some(limiter) = limiter else {
        return Ok(None);
    };
    let mut resources = Vec::with_capacity(limiter.resources.len());
    for (i, r) in limiter.resources.iter().enumerate() {
        if r.name.is_empty() {
            return Err(format!(
                "instance_group[{group}].rate_limiter.resources[{i}] has no name; name the resource \
                 (models that share a name share its count)"
            ));
        }
        resources.push(anemone_runtime::rate_limit::Resource {
            name: r.name.clone(),
            count: u64::from(r.count),
            global: r.global,
        });
    }
    Ok(Some(anemone_runtime::RateLimit {
        resources,
        priority: limiter.priority,
    }))
}

/// Reads the scheduling fields, refusing values that cannot work with a
/// message that says what to change. `files` reads the files of implicit
/// states' `initial_state { data_file }` (see [`super::StateFiles`]).
pub fn scheduler_config(
    config: &ModelConfig,
    files: super::StateFiles<'_>,
) -> Result<SchedulerConfig, String> {
    let max_batch_size = usize::try_from(config.max_batch_size)
        .ok()
        .filter(|n| *n > 0);
    let mut out = SchedulerConfig {
        max_batch_size,
        ..SchedulerConfig::default()
    };
    for (i, g) in config.instance_group.iter().enumerate() {
        let kind = match GroupKind::try_from(g.kind) {
            // A Python model placing itself (checked in `supported`).
            Ok(GroupKind::Auto | GroupKind::Model) => InstanceKind::Auto,
            Ok(GroupKind::Cpu) => InstanceKind::Cpu,
            Ok(GroupKind::Gpu) => InstanceKind::Gpu,
            _ => {
                return Err(format!(
                    "instance_group[{i}].kind is {}; use KIND_AUTO, KIND_CPU or KIND_GPU",
                    g.kind
                ))
            }
        };
        if kind == InstanceKind::Cpu && !g.gpus.is_empty() {
            // As Triton refuses it.
            return Err(format!(
                "instance_group[{i}] has kind KIND_CPU but lists gpus {:?}; remove 'gpus', or use kind KIND_GPU",
                g.gpus
            ));
        }
        out.instance_groups.push(InstanceGroup {
            // Triton: a count of 0 (unset) means one instance.
            count: usize::try_from(g.count.max(1)).unwrap_or(1),
            kind,
            backends: None,
            rate_limit: rate_limit(g.rate_limiter.as_ref(), i)?,
        });
    }
    if let Some(SchedulingChoice::SequenceBatching(sb)) = &config.scheduling_choice {
        if sb.iterative_sequence {
            super::sequence::iterative(sb, &config.backend)?;
            // The model's queue runs a rescheduled request again, ahead of
            // new ones, each request in a sequence of its own when it names
            // none (anemone-runtime's scheduler/reschedule.rs); batches of
            // what is queued, new and rescheduled, when the model has a
            // batch dimension (Triton's continuous batching).
            out.batching = max_batch_size.map(|_| Batching::default());
            return Ok(out);
        }
        let (settings, batching) = super::sequence::sequence_settings(sb, max_batch_size, files)?;
        out.sequence = Some(settings);
        out.batching = batching;
        return Ok(out);
    }
    let Some(SchedulingChoice::DynamicBatching(db)) = &config.scheduling_choice else {
        return Ok(out);
    };
    // Without a batch dimension (max_batch_size 0) Triton's dynamic batcher
    // still queues, one request a call: so does anemone's (the runtime's
    // load warns that nothing batches). Preferred sizes need rows.
    let preferred = match max_batch_size {
        Some(max) => preferred_sizes(&db.preferred_batch_size, max, "dynamic_batching.preferred_batch_size")?,
        None => match db.preferred_batch_size.first() {
            Some(p) => {
                return Err(format!(
                    "dynamic_batching.preferred_batch_size {p} needs a batch dimension, and max_batch_size is 0 \
                     (as Triton: \"dynamic batching preferred size must be <= max batch size\"); set \
                     max_batch_size, or remove preferred_batch_size"
                ))
            }
            None => Vec::new(),
        },
    };
    out.batching = Some(Batching {
        preferred_batch_sizes: preferred,
        max_queue_delay: Duration::from_micros(db.max_queue_delay_microseconds),
        preserve_ordering: db.preserve_ordering,
    });
    // Triton's rule: its ordering is kept within one queue only.
    if db.preserve_ordering && db.priority_levels > 1 {
        return Err(format!(
            "dynamic_batching.preserve_ordering is true with priority_levels {}; only one priority \
             level is allowed when 'preserve_ordering' is true (as in Triton): remove one of them",
            db.priority_levels
        ));
    }
    // Triton's rule: a delayed request would be answered out of arrival order.
    if db.preserve_ordering {
        let delaying = (db
            .default_queue_policy
            .iter()
            .map(|p| ("default_queue_policy".to_string(), p)))
        .chain(
            db.priority_queue_policy
                .iter()
                .map(|(l, p)| (format!("priority_queue_policy[{l}]"), p)),
        )
        // A policy without a timeout delays nothing (Triton checks the same).
        .find(|(_, p)| {
            p.timeout_action == ProtoTimeoutAction::Delay as i32
                && p.default_timeout_microseconds != 0
        });
        if let Some((path, _)) = delaying {
            return Err(format!(
                "dynamic_batching.preserve_ordering is true and {path} has timeout_action DELAY; a queue \
                 policy can not have DELAY as timeout action when 'preserve_ordering' is true (as in \
                 Triton: a delayed request would be answered out of order): use REJECT, or drop one"
            ));
        }
    }
    // Checked against Triton's levels (a uint64), then held as anemone's
    // u32: levels past u32::MAX are the lowest one (no request tells them
    // apart from it), so Triton's `priority_levels: 18446744073709551615`
    // loads too.
    let triton_levels = db.priority_levels.max(1);
    let levels = u32::try_from(triton_levels).unwrap_or(u32::MAX);
    let held = |level: u64| u32::try_from(level).unwrap_or(u32::MAX);
    let mut priority_policies = BTreeMap::new();
    // Without priority_levels there is one level, and Triton reads no
    // level's policy: they are ignored (said once per load), not refused.
    if db.priority_levels == 0 && !db.priority_queue_policy.is_empty() {
        tracing::warn!(
            "dynamic_batching.priority_queue_policy (levels {}) is ignored: priority_levels is not set, \
             so every request has the one level and its default_queue_policy, as in Triton; set \
             priority_levels to use them",
            db.priority_queue_policy.keys().map(u64::to_string).collect::<Vec<_>>().join(", ")
        );
    }
    let levels_policies = db
        .priority_queue_policy
        .iter()
        .filter(|_| db.priority_levels > 0);
    for (&level, policy) in levels_policies {
        if level == 0 || level > triton_levels {
            return Err(format!(
                "dynamic_batching.priority_queue_policy has level {level}, outside 1..={triton_levels} (priority_levels)"
            ));
        }
        priority_policies.insert(
            held(level),
            queue_policy(policy, &format!("priority_queue_policy[{level}]"))?,
        );
    }
    // Triton's rule: levels need a default level, inside them.
    let default_priority = match db.default_priority_level {
        0 if db.priority_levels == 0 => 1,
        0 => {
            return Err(format!(
                "dynamic_batching.priority_levels is {levels} but default_priority_level is not set; set \
                 default_priority_level in 1..={levels}, the level of requests that send no priority \
                 (as Triton requires: \"default priority level must be in range [1, {levels}]\")"
            ))
        }
        n if n <= triton_levels => held(n),
        n => {
            return Err(format!(
                "dynamic_batching.default_priority_level is {n}, outside 1..={triton_levels} (priority_levels)"
            ))
        }
    };
    out.queue = Some(QueueSettings {
        priority_levels: levels,
        default_priority,
        default_policy: match &db.default_queue_policy {
            Some(p) => queue_policy(p, "default_queue_policy")?,
            None => QueuePolicy::default(),
        },
        priority_policies,
    });
    Ok(out)
}

/// A `preferred_batch_size` list (at `path`), each size in 1..=`max`.
pub(super) fn preferred_sizes(sizes: &[i32], max: usize, path: &str) -> Result<Vec<usize>, String> {
    sizes
        .iter()
        .map(|&p| {
            usize::try_from(p)
                .ok()
                .filter(|p| (1..=max).contains(p))
                .ok_or_else(|| format!("{path} {p} is outside 1..={max} (max_batch_size)"))
        })
        .collect()
}

fn queue_policy(p: &ModelQueuePolicy, path: &str) -> Result<QueuePolicy, String> {
    let timeout_action = match ProtoTimeoutAction::try_from(p.timeout_action) {
        Ok(ProtoTimeoutAction::Reject) => TimeoutAction::Reject,
        Ok(ProtoTimeoutAction::Delay) => TimeoutAction::Delay,
        Err(_) => {
            return Err(format!(
                "dynamic_batching.{path}.timeout_action is {}; use REJECT or DELAY",
                p.timeout_action
            ))
        }
    };
    Ok(QueuePolicy {
        // Triton: 0 means unbounded, and no timeout.
        max_queue_size: (p.max_queue_size > 0).then_some(p.max_queue_size as usize),
        default_timeout: (p.default_timeout_microseconds > 0)
            .then(|| Duration::from_micros(p.default_timeout_microseconds)),
        allow_timeout_override: p.allow_timeout_override,
        timeout_action,
    })
}

/// Fills what Triton's normalization adds to a dynamic batcher, for the
/// config as `GET /v2/models/{m}/config` shows it: `preferred_batch_size`
/// `[max_batch_size]` when none is given (tritonserver 2.51 shows it so;
/// anemone's batcher reads an empty list the same way, so only the view
/// gets it).
pub fn show_tritons_batcher(config: &mut ModelConfig) {
    let max = config.max_batch_size;
    if let Some(SchedulingChoice::DynamicBatching(db)) = &mut config.scheduling_choice {
        if db.preferred_batch_size.is_empty() && max > 0 {
            db.preferred_batch_size.push(max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ModelConfig;

    fn parse(text: &str) -> ModelConfig {
        crate::model_config::parse_pbtxt(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn the_shown_batcher_prefers_max_batch_size_where_none_is_given() {
        let preferred = |text: &str| {
            let mut c = parse(text);
            show_tritons_batcher(&mut c);
            match c.scheduling_choice {
                Some(SchedulingChoice::DynamicBatching(db)) => db.preferred_batch_size,
                _ => panic!("{text}: no dynamic batcher"),
            }
        };
        assert_eq!(preferred("max_batch_size: 8 dynamic_batching { }"), [8]);
        assert_eq!(
            preferred("max_batch_size: 8 dynamic_batching { preferred_batch_size: [ 2, 4 ] }"),
            [2, 4]
        );
        assert_eq!(
            preferred("max_batch_size: 0 dynamic_batching { }"),
            Vec::<i32>::new()
        );
        let mut sequence = parse("max_batch_size: 8 sequence_batching { }");
        show_tritons_batcher(&mut sequence);
        assert_eq!(sequence, parse("max_batch_size: 8 sequence_batching { }"));
    }

    #[test]
    fn triton_scheduling_fields_become_typed_settings() {
        let c = parse(
            "max_batch_size: 16\n\
             dynamic_batching {\n\
               max_queue_delay_microseconds: 500\n\
               preferred_batch_size: [ 4, 8 ]\n\
               preserve_ordering: false\n\
               priority_levels: 3\n\
               default_priority_level: 2\n\
               default_queue_policy { max_queue_size: 10 default_timeout_microseconds: 2000 \
                 allow_timeout_override: true timeout_action: DELAY }\n\
               priority_queue_policy { key: 1 value: { max_queue_size: 2 } }\n\
             }\n\
             instance_group [ { count: 2 kind: KIND_CPU }, { kind: KIND_GPU gpus: [ 0 ] } ]\n",
        );
        let s = scheduler_config(&c, &crate::model_config::no_state_files).unwrap();
        assert_eq!(s.max_batch_size, Some(16));
        let b = s.batching.unwrap();
        assert_eq!(b.preferred_batch_sizes, vec![4, 8]);
        assert_eq!(b.max_queue_delay, Duration::from_micros(500));
        assert!(!b.preserve_ordering);
        // Policies of levels without priority_levels are ignored, as
        // Triton ignores them (its QA's queue-times trial loads).
        let ignored = parse(
            "max_batch_size: 8 dynamic_batching { default_queue_policy { default_timeout_microseconds: 123 } \
             priority_queue_policy { key: 1 value { default_timeout_microseconds: 5 } } \
             priority_queue_policy { key: 2 value { default_timeout_microseconds: 5 } } }",
        );
        let q = scheduler_config(&ignored, &crate::model_config::no_state_files)
            .unwrap()
            .queue
            .unwrap();
        assert_eq!(q.priority_levels, 1);
        assert_eq!(
            q.policy(1).default_timeout,
            Some(Duration::from_micros(123))
        );
        let one = parse("max_batch_size: 2 dynamic_batching { preserve_ordering: true }");
        let one = scheduler_config(&one, &crate::model_config::no_state_files).unwrap();
        assert!(one.batching.unwrap().preserve_ordering);
        let q = s.queue.unwrap();
        assert_eq!((q.priority_levels, q.default_priority), (3, 2));
        assert_eq!(q.default_policy.max_queue_size, Some(10));
        assert_eq!(
            q.default_policy.default_timeout,
            Some(Duration::from_millis(2))
        );
        assert!(q.default_policy.allow_timeout_override);
        assert_eq!(q.default_policy.timeout_action, TimeoutAction::Delay);
        assert_eq!(q.policy(1).max_queue_size, Some(2));
        assert_eq!(q.policy(1).default_timeout, None);
        assert_eq!(
            s.instance_groups,
            vec![
                InstanceGroup {
                    count: 2,
                    kind: InstanceKind::Cpu,
                    backends: None,
                    rate_limit: None,
                },
                InstanceGroup {
                    count: 1,
                    kind: InstanceKind::Gpu,
                    backends: None,
                    rate_limit: None,
                },
            ]
        );
    }

    #[test]
    fn an_instance_groups_rate_limiter_becomes_its_rate_limit() {
        let c = parse(
            "instance_group [ { count: 2 rate_limiter { resources [ { name: \"R1\" count: 4 }, \
             { name: \"G\" global: true count: 1 } ] priority: 2 } }, { count: 1 } ]",
        );
        let s = scheduler_config(&c, &crate::model_config::no_state_files).unwrap();
        let limit = s.instance_groups[0].rate_limit.as_ref().unwrap();
        assert_eq!(limit.priority, 2);
        let resources: Vec<_> = limit
            .resources
            .iter()
            .map(|r| (r.name.as_str(), r.count, r.global))
            .collect();
        assert_eq!(resources, [("R1", 4, false), ("G", 1, true)]);
        assert_eq!(s.instance_groups[1].rate_limit, None);
    }

    #[test]
    fn triton_configs_that_load_there_load_here() {
        // tritonserver 2.51 loads each (measured): a dynamic batcher without
        // a batch dimension queues one request a call; DELAY without a
        // timeout delays nothing, so preserve_ordering allows it.
        let s = scheduler_config(
            &parse(
                "max_batch_size: 0 dynamic_batching { max_queue_delay_microseconds: 100 priority_levels: 2 \
                 default_priority_level: 2 default_queue_policy { max_queue_size: 2 } }",
            ),
            &crate::model_config::no_state_files,
        )
        .unwrap();
        assert_eq!(s.max_batch_size, None);
        assert_eq!(
            s.batching.unwrap().preferred_batch_sizes,
            Vec::<usize>::new()
        );
        let queue = s.queue.unwrap();
        assert_eq!((queue.priority_levels, queue.default_priority), (2, 2));
        assert_eq!(queue.default_policy.max_queue_size, Some(2));
        for text in [
            "max_batch_size: 4 dynamic_batching { preserve_ordering: true default_queue_policy { \
             timeout_action: DELAY } }",
            "max_batch_size: 4 dynamic_batching { preserve_ordering: true priority_levels: 1 \
             default_priority_level: 1 priority_queue_policy { key: 1 value { timeout_action: DELAY } } }",
        ] {
            let s = scheduler_config(&parse(text), &crate::model_config::no_state_files);
            assert!(s.unwrap().batching.unwrap().preserve_ordering, "{text}");
        }
    }

    #[test]
    fn scheduling_values_that_cannot_work_are_refused() {
        for (text, want) in [
            ("dynamic_batching { preferred_batch_size: [ 2 ] }", "needs a batch dimension"),
            (
                "instance_group [ { kind: KIND_CPU gpus: [ 0 ] } ]",
                "instance_group[0] has kind KIND_CPU but lists gpus [0]",
            ),
            ("max_batch_size: 4 dynamic_batching { preferred_batch_size: [ 8 ] }", "outside 1..=4"),
            (
                "max_batch_size: 4 dynamic_batching { preserve_ordering: true default_queue_policy { \
                 timeout_action: DELAY default_timeout_microseconds: 1000 } }",
                "default_queue_policy has timeout_action DELAY",
            ),
            (
                "max_batch_size: 4 dynamic_batching { preserve_ordering: true priority_levels: 1 \
                 default_priority_level: 1 priority_queue_policy { key: 1 value { timeout_action: DELAY \
                 default_timeout_microseconds: 5 } } }",
                "priority_queue_policy[1] has timeout_action DELAY",
            ),
            ("max_batch_size: 4 dynamic_batching { priority_levels: 2 default_priority_level: 3 }", "outside 1..=2"),
            // As tritonserver 2.51 refuses it.
            (
                "max_batch_size: 4 dynamic_batching { priority_levels: 3 }",
                "default priority level must be in range [1, 3]",
            ),
            (
                "max_batch_size: 4 dynamic_batching { priority_levels: 2 priority_queue_policy { key: 5 value: { } } }",
                "level 5",
            ),
            (
                "instance_group [ { rate_limiter { resources [ { count: 1 } ] } } ]",
                "instance_group[0].rate_limiter.resources[0] has no name",
            ),
            // As tritonserver 2.51 refuses it.
            (
                "max_batch_size: 4 dynamic_batching { preserve_ordering: true priority_levels: 2 }",
                "only one priority level is allowed when 'preserve_ordering' is true",
            ),
        ] {
            let e = scheduler_config(&parse(text), &crate::model_config::no_state_files).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
