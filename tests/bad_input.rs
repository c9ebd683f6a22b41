mod common;
use common::*;
use parquet::file::metadata::ParquetMetaDataReader;

#[test]
fn scan_flips() {
    let s = Scratch::new();
    let p = s.path("good.parquet");
    let b = good_batch(64);
    write_parquet_with(&p, &[b], raw_props());
    let bytes = std::fs::read(&p).unwrap();
    let md = ParquetMetaDataReader::new().parse_and_finish(&std::fs::File::open(&p).unwrap()).unwrap();
    for c in md.row_group(0).columns() {
        eprintln!("{} off {} dict {:?} size {}", c.column_path(), c.data_page_offset(), c.dictionary_page_offset(), c.compressed_size());
    }
    let flen = u32::from_le_bytes(bytes[bytes.len()-8..bytes.len()-4].try_into().unwrap()) as usize;
    let end = bytes.len() - 8 - flen;
    eprintln!("file {} data end {}", bytes.len(), end);
    let q = s.path("bad.parquet");
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for i in 4..end {
        let mut b2 = bytes.clone();
        b2[i] ^= 0xFF;
        std::fs::write(&q, &b2).unwrap();
        let r = run(s.inspect().arg(&q).args(["--formula", "y ~ age + x + region"]));
        let key = if r.stderr.contains("panicked") { format!("PANIC {}", r.stderr.lines().find(|l| l.contains("panicked")).unwrap_or("")) } else { format!("{:?}", r.code) };
        if r.stderr.contains("panicked") || (r.code != Some(0) && !tally.contains_key(&key)) { eprintln!("byte {i}: {:?} {}", r.code, r.stderr.trim()); }
        *tally.entry(key).or_default() += 1;
        let _ = std::fs::remove_dir_all(s.cache());
    }
    eprintln!("{tally:#?}");
}
