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
        match into
            .batch_stats
            .iter_mut()
            .find(|x| x.batch_size == b.batch_size)
        {
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

/// Sums two Triton JSON statistics answers (`{"model_stats": [...]}`) into
/// `into`, per (name, version): counts and durations add, `last_inference`
/// is the later one, batch statistics add per batch size.
pub fn merge_json(into: &mut serde_json::Value, from: serde_json::Value) {
    use serde_json::Value;
    let key = |m: &Value| (m["name"].clone(), m["version"].clone());
    let Some(list) = into.get_mut("model_stats").and_then(Value::as_array_mut) else {
        *into = from;
        return;
    };
    let Value::Object(mut from) = from else {
        return;
    };
    let Some(Value::Array(others)) = from.remove("model_stats") else {
        return;
    };
    for m in others {
        match list.iter_mut().find(|x| key(x) == key(&m)) {
            Some(x) => add_json(x, m),
            None => list.push(m),
        }
    }
}

fn add_json(into: &mut serde_json::Value, from: serde_json::Value) {
    use serde_json::Value;
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(_) if k == "batch_size" => {}
                    Some(x) if k == "last_inference" => {
                        if v.as_u64() > x.as_u64() {
                            *x = v;
                        }
                    }
                    Some(x) => add_json(x, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for v in b {
                match a.iter_mut().find(|x| {
                    x.get("batch_size").is_some() && x.get("batch_size") == v.get("batch_size")
                }) {
                    Some(x) => add_json(x, v),
                    None => a.push(v),
                }
            }
        }
        (x @ Value::Number(_), Value::Number(n)) => {
            if let (Some(p), Some(q)) = (x.as_u64(), n.as_u64()) {
                *x = Value::from(p + q);
            }
        }
        _ => {}
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
        assert_eq!(
            (a.inference_count, a.execution_count, a.last_inference),
            (5, 5, 10)
        );
        let s = a.inference_stats.as_ref().unwrap().success.unwrap();
        assert_eq!((s.count, s.ns), (5, 17));
        assert_eq!(merged[1].inference_count, 1);
    }

    #[test]
    fn json_answers_are_summed_too() {
        let mut a = serde_json::json!({"model_stats": [{"name": "m", "version": "1", "last_inference": 5,
            "inference_count": 2, "inference_stats": {"success": {"count": 2, "ns": 10}},
            "batch_stats": [{"batch_size": 1, "compute_infer": {"count": 2, "ns": 4}}]}]});
        let b = serde_json::json!({"model_stats": [{"name": "m", "version": "1", "last_inference": 9,
            "inference_count": 1, "inference_stats": {"success": {"count": 1, "ns": 3}},
            "batch_stats": [{"batch_size": 1, "compute_infer": {"count": 1, "ns": 1}}]},
            {"name": "n", "version": "1", "inference_count": 7}]});
        merge_json(&mut a, b);
        let m = &a["model_stats"][0];
        assert_eq!(m["last_inference"], 9);
        assert_eq!(m["inference_count"], 3);
        assert_eq!(m["inference_stats"]["success"]["ns"], 13);
        assert_eq!(m["batch_stats"][0]["batch_size"], 1);
        assert_eq!(m["batch_stats"][0]["compute_infer"]["count"], 3);
        assert_eq!(a["model_stats"][1]["inference_count"], 7);
    }
}
