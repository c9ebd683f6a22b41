//! Inputs the fuzzers (scripts/fuzz.sh) found to crash or abort fulcrum, replayed through the
//! same path as their fuzz target: each must now give a result or a clean error. The files are
//! in tests/fuzz_regressions/, named `<target>-<what it hit>`; for `parquet_design` the first
//! byte picks the formula and the rest is the file (fuzz/replay/parquet_design.rs, shared with
//! the fuzz target).

#[path = "../fuzz/replay/parquet_design.rs"]
mod replay;

fn replay_parquet_design(name: &str) -> fulcrum::Result<fulcrum::Dataset> {
    let data = std::fs::read(format!("{}/tests/fuzz_regressions/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    replay::load(&data, dir.path()).expect("a non-empty input")
}

#[test]
fn sparse_index_near_two_to_the_thirty_does_not_abort() {
    // Found by `parquet_design` in its first minute: a mutated sparse index made the inferred
    // width ~10⁹ and Design::new asked for 24.6 GB of coefficient names (libFuzzer: out of
    // memory; the CLI would abort). Now a clean input error.
    let Err(e) = replay_parquet_design("parquet_design-oom-sparse-width") else {
        panic!("expected an error");
    };
    let msg = e.to_string();
    assert!(msg.contains("columns") && msg.contains("available"), "{msg}");
}

#[test]
fn wide_inferred_sparse_block_is_cheap() {
    // Found by the second `parquet_design` run: a 12-row file whose one sparse index is
    // 83,886,087. Loading it built 84M coefficient names and a manifest holding them (72 s and
    // 9 GB RSS natively, a libFuzzer timeout); names are now computed on demand, so neither the
    // build nor the reuse of its cache costs anything per sparse column. (Whether it loads or is
    // refused by `check_width` depends on the memory available; either way it must be quick.)
    let data = std::fs::read(format!(
        "{}/tests/fuzz_regressions/parquet_design-timeout-wide-sparse-names",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for pass in ["built", "reused"] {
        let t0 = std::time::Instant::now();
        let r = replay::load(&data, dir.path()).expect("a non-empty input");
        let took = t0.elapsed();
        if let Ok(ds) = &r {
            let d = ds.design();
            assert_eq!(d.coef_name(d.n_params() - 1), "feats[83886087]");
            assert_eq!(d.columns_of("feats[83886087]"), Some(vec![d.n_params() - 1]));
            let reused = ds.status == fulcrum::ingest::CacheStatus::Reused;
            assert_eq!(reused, pass == "reused", "{:?}", ds.status);
        }
        assert!(took.as_secs_f64() < 5.0, "{pass}: took {took:?}");
    }
}
