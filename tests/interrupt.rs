//! Interruption (issue 10, item 5): fulcrum is killed with SIGKILL while it builds its cache
//! and while it writes its outputs; nothing it leaves looks complete, and the next run
//! recovers (removes the dead run's temporaries) and succeeds.

#![cfg(unix)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A model frame large enough that building its cache and writing its diagnostics take a
/// noticeable fraction of a second: n rows, four numeric columns and a categorical.
fn big_file(s: &Scratch, n: usize) -> std::path::PathBuf {
    let x: Vec<f64> = (0..n).map(|i| ((i * 7919 % 10007) as f64 - 5003.0) / 2900.0).collect();
    let z: Vec<f64> = (0..n).map(|i| ((i * 104729 % 1009) as f64) / 1009.0).collect();
    let u: Vec<f64> = (0..n).map(|i| ((i * 31 % 97) as f64) / 97.0).collect();
    let v: Vec<f64> = (0..n).map(|i| ((i * 17 % 89) as f64) / 89.0).collect();
    let y: Vec<f64> = (0..n)
        .map(|i| ((x[i] + z[i] - 0.5 + u[i] * 0.3) > 0.0) as u8 as f64)
        .collect();
    let g: Vec<&str> = (0..n).map(|i| ["a", "b", "c", "d", "e"][i % 5]).collect();
    let p = s.path("big.parquet");
    write_parquet_with(
        &p,
        &[batch(vec![
            ("y", f64s(&y)),
            ("x", f64s(&x)),
            ("z", f64s(&z)),
            ("u", f64s(&u)),
            ("v", f64s(&v)),
            ("g", strs(&g)),
        ])],
        row_group_props(65_536),
    );
    p
}

fn diagnose(s: &Scratch, file: &Path) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("fulcrum"));
    c.arg("diagnose")
        .arg(file)
        .args([
            "--formula",
            "y ~ x + z + u + v + g",
            "--family",
            "binomial",
            "-q",
            "--out",
        ])
        .arg(s.path("out"))
        .arg("--cache-dir")
        .arg(s.cache())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Names of the entries of `dir` (recursively) that contain `.tmp-`.
fn temps(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(".tmp-") {
                out.push(e.path().display().to_string());
            } else if e.path().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

/// Wait until `ready()` holds, then SIGKILL the child; false if it finished first.
fn kill_when(child: &mut Child, ready: impl Fn() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if ready() {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    panic!("the run neither reached the point to kill at nor finished");
}

fn rerun_succeeds(s: &Scratch, file: &Path) {
    let out = diagnose(s, file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        temps(s.dir.path()).is_empty(),
        "temporaries left: {:?}",
        temps(s.dir.path())
    );
    assert_cache_published(&s.cache());
    let sm: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("out").join("summary.json")).unwrap()).unwrap();
    assert_eq!(sm["n_obs"], 1_500_000);
}

#[test]
fn killed_while_building_the_cache() {
    let s = Scratch::new();
    let p = big_file(&s, 1_500_000);
    let mut child = diagnose(&s, &p).spawn().unwrap();
    // Kill once the temporary cache directory holds a chunk file.
    let killed = kill_when(&mut child, || {
        temps(&s.cache()).iter().any(|t| {
            std::fs::read_dir(t)
                .map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".bin")))
                .unwrap_or(false)
        })
    });
    assert!(killed, "the run finished before it could be killed mid-build");
    // Nothing looks complete: no published cache, no outputs.
    let problems: Vec<String> = cache_problems(&s.cache())
        .into_iter()
        .filter(|p| p.contains("complete-looking"))
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(
        !temps(&s.cache()).is_empty(),
        "the killed run's temporary is there to recover from"
    );
    assert!(!s.path("out").join("summary.json").exists());
    rerun_succeeds(&s, &p);
}

#[test]
fn killed_while_writing_the_outputs() {
    let s = Scratch::new();
    let p = big_file(&s, 1_500_000);
    // Build the cache first, so that the kill lands in the output stage.
    let out = diagnose(&s, &p).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(s.path("out")).unwrap();
    let mut child = diagnose(&s, &p).spawn().unwrap();
    let killed = kill_when(&mut child, || !temps(&s.path("out")).is_empty());
    assert!(killed, "the run finished before it could be killed mid-write");
    // Every file without a temporary name is complete: diagnostics.parquet, if there, reads
    // back whole; summary.json, if there, parses.
    for e in std::fs::read_dir(s.path("out")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains(".tmp-") {
            continue;
        }
        if name.ends_with(".parquet") {
            let f = std::fs::File::open(e.path()).unwrap();
            let r = parquet::file::reader::SerializedFileReader::new(f);
            assert!(r.is_ok(), "{name} is not a complete Parquet file");
        }
        if name == "summary.json" {
            let t = std::fs::read_to_string(e.path()).unwrap();
            assert!(
                serde_json::from_str::<serde_json::Value>(&t).is_ok(),
                "half-written summary.json"
            );
        }
    }
    rerun_succeeds(&s, &p);
}
