//! Triton's model statistics summed over runners: the cluster's view of a
//! model is the sum of its replicas'.

use conduit_proto::inference as pb;
use std::collections::BTreeMap;

/// Sums the statistics runners returned, per (model, version).
pub fn merge(answers: Vec<Vec<pb::ModelStatistics>>) -> Vec<pb::ModelStatistics> {
    let mut merged: BTreeMap<(String, String), pb::ModelStatistics> = BTreeMap::new();
    for stats in answers.into_iter().flatten() {
        let key = (stats.name.clone(), stats.version.clone());
        match merged.get_mut(&key) {
            None => {
                merged.insert(key, stats);
            }
            Some(into) => add(into, stats),
        }
    }
    merged.into_values().collect()
}

fn add(into: &mut pb::ModelStatistics, from: pb::ModelStatistics) {
    into.last_inference = into.last_inference.max(from.last_inference);
    into.inference_count += from.inference_count;
    into.execution_count += from.execution_count;
    if let Some(f) = from.inference_stats {
        let i = into.inference_stats.get_or_insert_with(Default::default);
        add_duration(&mut i.success, f.success);
        add_duration(&mut i.fail, f.fail);
        add_duration(&mut i.queue, f.queue);
        add_duration(&mut i.compute_input, f.compute_input);
        add_duration(&mut i.compute_infer, f.compute_infer);
        add_duration(&mut i.compute_output, f.compute_output);
        add_duration(&mut i.cache_hit, f.cache_hit);
        add_duration(&mut i.cache_miss, f.cache_miss);
    }
    for b in from.batch_stats {
        match into.batch_stats.iter_mut().find(|x| x.batch_size == b.batch_size) {
            Some(x) => {
                add_duration(&mut x.compute_input, b.compute_input);
                add_duration(&mut x.compute_infer, b.compute_infer);
                add_duration(&mut x.compute_output, b.compute_output);
            }
            None => into.batch_stats.push(b),
        }
    }
    into.memory_usage.extend(from.memory_usage);
}

fn add_duration(into: &mut Option<pb::StatisticDuration>, from: Option<pb::StatisticDuration>) {
    if let Some(f) = from {
        let i = into.get_or_insert_with(Default::default);
        i.count += f.count;
        i.ns += f.ns;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(name: &str, count: u64, ns: u64) -> pb::ModelStatistics {
        pb::ModelStatistics {
            name: name.into(),
            version: "1.0.0".into(),
            last_inference: ns,
            inference_count: count,
            execution_count: count,
            inference_stats: Some(pb::InferStatistics {
                success: Some(pb::StatisticDuration { count, ns }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn replicas_are_summed_per_model() {
        let merged = merge(vec![
            vec![stats("a", 2, 10), stats("b", 1, 5)],
            vec![stats("a", 3, 7)],
        ]);
        assert_eq!(merged.len(), 2);
        let a = &merged[0];
        assert_eq!((a.inference_count, a.execution_count, a.last_inference), (5, 5, 10));
        let s = a.inference_stats.as_ref().unwrap().success.unwrap();
        assert_eq!((s.count, s.ns), (5, 17));
        assert_eq!(merged[1].inference_count, 1);
    }
}
