//! The models behind the outside-oracle files in fixtures/reference: each file either carries a
//! `fulcrum` block (scripts/reference/extra_reference.py) or describes its design the way
//! scripts/reference/reference.py builds it (intercept, numeric columns, categoricals).

use std::fs::File;

use fulcrum::design::{ModelInput, NaPolicy};
use fulcrum::glm::{Family, Link};
use fulcrum::ingest::IngestOptions;
use fulcrum::progress::NoProgress;
use serde_json::Value;

/// `fixtures/<name>`.
pub fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `fixtures/reference/<name>`, parsed.
pub fn reference(name: &str) -> Value {
    serde_json::from_reader(File::open(fixture(&format!("reference/{name}"))).unwrap()).unwrap()
}

/// Load `fixtures/<data>` under `formula` (NA rows dropped) with the cache under `cache`.
pub fn load_fixture(data: &str, formula: &str, filters: &[(&str, &str)], cache: &std::path::Path) -> fulcrum::Dataset {
    let input = ModelInput {
        formula: formula.into(),
        filters: filters.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        na: NaPolicy::Drop,
        weights: None,
    };
    load_input(data, &input, cache)
}

fn load_input(data: &str, input: &ModelInput, cache: &std::path::Path) -> fulcrum::Dataset {
    let io = IngestOptions {
        cache_dir: Some(cache.to_path_buf()),
        ..Default::default()
    };
    fulcrum::load(&[fixture(data)], input, &io, &NoProgress).unwrap()
}

/// The model a reference file was fitted with, in fulcrum's terms.
pub struct RefModel {
    pub data: String,
    pub formula: String,
    pub filters: Vec<(String, String)>,
    pub weights: Option<String>,
    pub family: Family,
    pub link: Option<Link>,
}

fn split(s: &str) -> (String, String) {
    let (a, b) = s.split_once('=').unwrap();
    (a.to_string(), b.to_string())
}

/// Read the model of reference file `r`.
pub fn model_of(r: &Value) -> RefModel {
    if let Some(f) = r.get("fulcrum") {
        return RefModel {
            data: f["input"].as_str().unwrap().trim_start_matches("fixtures/").to_string(),
            formula: f["formula"].as_str().unwrap().to_string(),
            filters: f["filters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| split(x.as_str().unwrap()))
                .collect(),
            weights: f["weights"].as_str().map(str::to_string),
            family: Family::parse(f["family"].as_str().unwrap()).unwrap(),
            link: Link::parse(f["link"].as_str().unwrap()),
        };
    }
    let d = &r["design"];
    let logs: Vec<&str> = r["transforms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str().unwrap().strip_suffix("=log"))
        .collect();
    let mut terms: Vec<String> = d["numeric"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let c = c.as_str().unwrap();
            if logs.contains(&c) {
                format!("log({c})")
            } else {
                c.to_string()
            }
        })
        .collect();
    terms.extend(
        d["categorical"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| format!("C({})", c.as_str().unwrap())),
    );
    let label = r["label"].as_str().unwrap();
    let lhs = match r["failures"].as_str() {
        Some(f) => format!("cbind({label}, {f})"),
        None => label.to_string(),
    };
    RefModel {
        data: r["data"].as_str().unwrap().rsplit('/').next().unwrap().to_string(),
        formula: format!("{lhs} ~ {}", terms.join(" + ")),
        filters: r["filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| split(x.as_str().unwrap()))
            .collect(),
        weights: None,
        family: Family::parse(r["family"].as_str().unwrap()).unwrap(),
        link: Link::parse(r["link"].as_str().unwrap()),
    }
}

/// Load the model's data into a chunk cache under `cache`.
pub fn load(m: &RefModel, cache: &std::path::Path) -> fulcrum::Dataset {
    let input = ModelInput {
        formula: m.formula.clone(),
        filters: m.filters.clone(),
        na: NaPolicy::Drop,
        weights: m.weights.clone(),
    };
    load_input(&m.data, &input, cache)
}

/// reference.py names a log-transformed column by the column alone.
pub fn reference_name(ours: &str, r: &Value) -> String {
    if let Some(inner) = ours.strip_prefix("log(").and_then(|s| s.strip_suffix(')')) {
        if r["transforms"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t.as_str() == Some(&format!("{inner}=log"))))
        {
            return inner.to_string();
        }
    }
    ours.to_string()
}

/// A JSON array of numbers as f64.
pub fn json_f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// A JSON array of non-negative integers as u64.
pub fn json_u64s(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}
