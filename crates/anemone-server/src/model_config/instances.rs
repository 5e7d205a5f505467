//! A loaded model's `instance_group`, as Triton shows it once a model is
//! loaded: every group with its kind resolved, and a group for a model
//! whose config names none.

use anemone_core::Tier;

use super::ensemble::is_ensemble;
use crate::proto::model_instance_group::Kind as GroupKind;
use crate::proto::{ModelConfig, ModelInstanceGroup};

/// Writes into `config` the instance groups as the loaded model runs them;
/// `engines` is the tier of each engine instance, in group order.
///
/// - A config with no group gets one, named after the model, with the
///   model's engine count, as Triton adds it.
/// - `KIND_AUTO` becomes `KIND_GPU` or `KIND_CPU`, by where the group's
///   first instance runs. An instance on Apple's Neural Engine keeps
///   `KIND_AUTO`: Triton's kinds have no word for it.
/// - A count under 1 becomes 1, the one instance it runs.
/// - A GPU group that lists no device lists device 0, the one its
///   instances run on (the first that `CUDA_VISIBLE_DEVICES` leaves).
///
/// Ensembles have no instances and are left as they are.
pub fn resolve_instance_groups(config: &mut ModelConfig, engines: &[Tier]) {
    if is_ensemble(config) {
        return;
    }
    if config.instance_group.is_empty() {
        config.instance_group.push(ModelInstanceGroup {
            name: config.name.clone(),
            count: i32::try_from(engines.len().max(1)).unwrap_or(i32::MAX),
            kind: GroupKind::Auto as i32,
            ..Default::default()
        });
    }
    let mut first = 0usize;
    for group in &mut config.instance_group {
        let tier = engines.get(first).copied();
        // Under 1 (unset, 0 or negative) is one instance, as Triton shows it.
        group.count = group.count.max(1);
        first = first.saturating_add(usize::try_from(group.count).unwrap_or(1));
        if group.kind == GroupKind::Auto as i32 {
            group.kind = match tier {
                Some(Tier::Gpu) => GroupKind::Gpu,
                Some(Tier::OptimisedCpu | Tier::PortableCpu) => GroupKind::Cpu,
                Some(Tier::NeuralEngine) | None => GroupKind::Auto,
            } as i32;
        }
        if group.kind == GroupKind::Gpu as i32 && group.gpus.is_empty() {
            group.gpus.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, count: i32, kind: GroupKind) -> ModelInstanceGroup {
        ModelInstanceGroup {
            name: name.into(),
            count,
            kind: kind as i32,
            ..Default::default()
        }
    }

    #[test]
    fn groups_show_where_the_instances_run() {
        // No group: one, named after the model, counting its engines.
        let mut c = ModelConfig {
            name: "add".into(),
            ..Default::default()
        };
        resolve_instance_groups(&mut c, &[Tier::PortableCpu]);
        assert_eq!(c.instance_group, vec![group("add", 1, GroupKind::Cpu)]);

        let mut c = ModelConfig {
            name: "net".into(),
            ..Default::default()
        };
        resolve_instance_groups(&mut c, &[Tier::Gpu]);
        let mut want = group("net", 1, GroupKind::Gpu);
        want.gpus = vec![0];
        assert_eq!(c.instance_group, vec![want]);

        // Groups given: each resolved by its own first instance; given kinds kept.
        let mut c = ModelConfig {
            name: "m".into(),
            instance_group: vec![
                group("m_0", 2, GroupKind::Auto),
                group("m_1", 1, GroupKind::Auto),
                group("m_2", 1, GroupKind::Cpu),
                group("m_3", 1, GroupKind::Auto),
            ],
            ..Default::default()
        };
        let engines = [
            Tier::OptimisedCpu,
            Tier::OptimisedCpu,
            Tier::Gpu,
            Tier::PortableCpu,
            Tier::NeuralEngine,
        ];
        resolve_instance_groups(&mut c, &engines);
        let kinds: Vec<(i32, Vec<i32>)> = (c.instance_group.iter())
            .map(|g| (g.kind, g.gpus.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (GroupKind::Cpu as i32, vec![]),
                (GroupKind::Gpu as i32, vec![0]),
                (GroupKind::Cpu as i32, vec![]),
                (GroupKind::Auto as i32, vec![]),
            ]
        );

        // A count under 1 shows the one instance it runs, as Triton's.
        let mut c = ModelConfig {
            name: "n".into(),
            instance_group: vec![
                group("n_0", -1, GroupKind::Cpu),
                group("n_1", 0, GroupKind::Cpu),
            ],
            ..Default::default()
        };
        resolve_instance_groups(&mut c, &[Tier::PortableCpu, Tier::PortableCpu]);
        let counts: Vec<i32> = c.instance_group.iter().map(|g| g.count).collect();
        assert_eq!(counts, [1, 1]);

        // An ensemble has none.
        let mut c = ModelConfig {
            name: "e".into(),
            platform: "ensemble".into(),
            ..Default::default()
        };
        resolve_instance_groups(&mut c, &[]);
        assert!(c.instance_group.is_empty());
    }
}
