//! Triton's version policy: which version directories to load.

use crate::proto::model_version_policy::PolicyChoice;
use crate::proto::ModelConfig;

/// Chooses the versions to load by Triton's version policy.
///
/// `available` lists the numeric version directories that hold a model file.
/// No policy means the latest one; `latest { num_versions: N }` the N highest;
/// `all` every one; `specific { versions: [...] }` those of them that are
/// available (as Triton, which serves the others when one is missing; the
/// missing ones are logged), at least one. The result is ascending, without
/// duplicates.
pub fn versions_to_load(config: &ModelConfig, available: &[u64]) -> Result<Vec<u64>, String> {
    let mut found: Vec<u64> = available.to_vec();
    found.sort_unstable();
    found.dedup();
    if found.is_empty() {
        return Err(
            "no version directories (e.g. 1/) with a model file; put the model in <model>/1/"
                .to_string(),
        );
    }
    let policy = config
        .version_policy
        .as_ref()
        .and_then(|p| p.policy_choice.as_ref());
    match policy {
        None => Ok(latest(&found, 1)),
        Some(PolicyChoice::Latest(l)) => {
            if l.num_versions == 0 {
                return Err(
                    "version_policy.latest.num_versions is 0; set it to 1 or more".to_string(),
                );
            }
            Ok(latest(
                &found,
                usize::try_from(l.num_versions).unwrap_or(usize::MAX),
            ))
        }
        Some(PolicyChoice::All(_)) => Ok(found),
        Some(PolicyChoice::Specific(s)) => {
            if s.versions.is_empty() {
                return Err(
                    "version_policy.specific.versions is empty; list the versions to load, e.g. [ 1 ]".to_string()
                );
            }
            let shown: Vec<String> = found.iter().map(u64::to_string).collect();
            let missing = |v: i64| {
                format!(
                    "version_policy.specific.versions lists version {v}, but there is no version directory {v}/ \
                     with a model file (found: {})",
                    shown.join(", ")
                )
            };
            let mut out = Vec::with_capacity(s.versions.len());
            let mut absent = Vec::new();
            for &v in &s.versions {
                match u64::try_from(v) {
                    Ok(u) if found.binary_search(&u).is_ok() => out.push(u),
                    Ok(_) => absent.push(v),
                    Err(_) => return Err(format!("{}; versions are 0 or more", missing(v))),
                }
            }
            if out.is_empty() {
                return Err(format!(
                    "{}; add it or list a version that is there",
                    missing(absent[0])
                ));
            }
            for v in absent {
                tracing::warn!(
                    "{}; serving the listed versions that are there, as Triton does",
                    missing(v)
                );
            }
            out.sort_unstable();
            out.dedup();
            Ok(out)
        }
    }
}

fn latest(found: &[u64], n: usize) -> Vec<u64> {
    found[found.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_config::fixtures::*;
    use crate::model_config::parse_pbtxt;
    use crate::proto::model_version_policy::{All, Latest, Specific};

    #[test]
    fn version_policies() {
        let avail = [3, 1, 7, 2];
        assert_eq!(
            versions_to_load(&ModelConfig::default(), &avail).unwrap(),
            vec![7]
        );
        assert_eq!(
            versions_to_load(&with_policy(None), &avail).unwrap(),
            vec![7]
        );
        let latest = |n| with_policy(Some(PolicyChoice::Latest(Latest { num_versions: n })));
        assert_eq!(versions_to_load(&latest(2), &avail).unwrap(), vec![3, 7]);
        assert_eq!(
            versions_to_load(&latest(10), &avail).unwrap(),
            vec![1, 2, 3, 7]
        );
        assert!(versions_to_load(&latest(0), &avail)
            .unwrap_err()
            .contains("num_versions"));
        let all = with_policy(Some(PolicyChoice::All(All {})));
        assert_eq!(versions_to_load(&all, &[2, 1, 2]).unwrap(), vec![1, 2]);
        let specific =
            |v: Vec<i64>| with_policy(Some(PolicyChoice::Specific(Specific { versions: v })));
        assert_eq!(
            versions_to_load(&specific(vec![3, 1]), &avail).unwrap(),
            vec![1, 3]
        );
        // A missing one is left out, the others served, as Triton does.
        assert_eq!(
            versions_to_load(&specific(vec![1, 4]), &avail).unwrap(),
            vec![1]
        );
        let e = versions_to_load(&specific(vec![4, 5]), &avail).unwrap_err();
        assert!(e.contains("version 4") && e.contains("4/"), "{e}");
        assert!(versions_to_load(&specific(vec![-1]), &avail)
            .unwrap_err()
            .contains("-1"));
        assert!(versions_to_load(&specific(vec![]), &avail).is_err());
        let e = versions_to_load(&ModelConfig::default(), &[]).unwrap_err();
        assert!(
            e.contains("no version directories (e.g. 1/) with a model file"),
            "{e}"
        );
        // Policies parsed from text behave the same.
        let c = parse_pbtxt("version_policy: { specific: { versions: [ 1, 2 ] } }").unwrap();
        assert_eq!(versions_to_load(&c, &avail).unwrap(), vec![1, 2]);
    }
}
