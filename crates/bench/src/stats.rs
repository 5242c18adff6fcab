//! Latency samples, percentiles, and figures summarised over repeated runs.

use std::time::Duration;

use serde_json::{json, Value};

/// The `p`-th percentile (0..=100) of `values`, nearest rank; `None` when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Milliseconds, as the figures are reported.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One measured quantity: its value in each run, summarised as median, min and max.
#[derive(Debug, Clone)]
pub struct Figure {
    pub group: &'static str,
    pub name: String,
    pub unit: &'static str,
    pub runs: Vec<f64>,
}

impl Figure {
    pub fn new(group: &'static str, name: impl Into<String>, unit: &'static str) -> Self {
        Self {
            group,
            name: name.into(),
            unit,
            runs: Vec::new(),
        }
    }

    pub fn median(&self) -> f64 {
        percentile(&self.runs, 50.0).unwrap_or(f64::NAN)
    }

    pub fn min(&self) -> f64 {
        self.runs.iter().copied().fold(f64::NAN, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.runs.iter().copied().fold(f64::NAN, f64::max)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "group": self.group,
            "name": self.name,
            "unit": self.unit,
            "median": round(self.median()),
            "min": round(self.min()),
            "max": round(self.max()),
            "runs": self.runs.iter().map(|v| round(*v)).collect::<Vec<_>>(),
        })
    }
}

/// A goal of the issue, judged on a figure's median.
#[derive(Debug, Clone)]
pub struct Goal {
    pub name: String,
    pub value: f64,
    pub limit: f64,
    /// The value must be at most (`true`) or at least (`false`) the limit.
    pub at_most: bool,
}

impl Goal {
    pub fn met(&self) -> bool {
        if self.at_most {
            self.value <= self.limit
        } else {
            self.value >= self.limit
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "value": round(self.value),
            "goal": format!("{} {}", if self.at_most { "<=" } else { ">=" }, self.limit),
            "met": self.met(),
        })
    }
}

pub fn round(v: f64) -> Value {
    if v.is_finite() {
        json!((v * 100.0).round() / 100.0)
    } else {
        Value::Null
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn a_figure_summarises_its_runs() {
        let mut f = Figure::new("g", "n", "ms");
        f.runs = vec![3.0, 1.0, 2.0];
        assert_eq!((f.median(), f.min(), f.max()), (2.0, 1.0, 3.0));
    }

    #[test]
    fn goals_compare_in_their_direction() {
        let at_most = Goal {
            name: "a".into(),
            value: 1.2,
            limit: 1.3,
            at_most: true,
        };
        let at_least = Goal {
            name: "b".into(),
            value: 0.7,
            limit: 0.8,
            at_most: false,
        };
        assert!(at_most.met());
        assert!(!at_least.met());
    }
}
