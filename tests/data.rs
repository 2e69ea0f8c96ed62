//! Data preparation, all on the host: the embedded digits, the DataLoader, the CSV cleaner and
//! preprocessor, splits, and the IDX reader. The CSV, preparation and IDX tests are in
//! `tests/data/`.

#[path = "data/csv.rs"]
mod csv;
#[path = "data/idx.rs"]
mod idx;
#[path = "data/prepare.rs"]
mod prepare;
#[path = "common/skip.rs"]
mod skip;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kiln::data::*;

// ---------------------------------------------------------------- helpers

/// A fresh directory for one test, under the system temp dir.
pub(crate) fn tmp_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-data-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Write `bytes` to `name` in a fresh directory for `test`.
pub(crate) fn write_file(test: &str, name: &str, bytes: &[u8]) -> PathBuf {
    let p = tmp_dir(test).join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

pub(crate) fn table(text: &str, header: HeaderMode) -> Table {
    Table::from_csv_str(text, "t.csv", header).unwrap()
}

pub(crate) fn prepare(text: &str, opts: &TabularOptions) -> Result<TabularSplit, DataError> {
    prepare_table(
        Table::from_csv_str(text, "t.csv", opts.header)?,
        opts,
        SplitFractions::default(),
        0,
    )
}

pub(crate) fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Features 0..n (one per example, so a batch names its examples) and labels i % 3.
pub(crate) fn counting_dataset(n: usize) -> InMemoryDataset {
    InMemoryDataset::new(
        (0..n).map(|i| i as f32).collect(),
        vec![1],
        Targets::Classes {
            labels: (0..n as u32).map(|i| i % 3).collect(),
            num_classes: 3,
        },
    )
    .unwrap()
}

pub(crate) fn epoch_ids(loader: &DataLoader, e: u64) -> Vec<usize> {
    loader
        .epoch(e)
        .flat_map(|b| b.x)
        .map(|v| v as usize)
        .collect()
}

// ---------------------------------------------------------------- digits

#[test]
fn digits_has_1797_examples_10_classes_in_unit_range() {
    let ds = digits().unwrap();
    assert_eq!(ds.len(), 1797);
    assert_eq!(ds.feature_shape(), vec![64]);
    assert_eq!(ds.num_classes(), Some(10));
    let names: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    assert_eq!(ds.class_names(), Some(&names[..]));
    let x = ds.features();
    assert_eq!(x.len(), 1797 * 64);
    assert!(x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert_eq!(
        x.iter().cloned().fold(0.0, f32::max),
        1.0,
        "pixel 16 -> 1.0"
    );
    // Every class is there, roughly 180 each.
    assert!(
        ds.class_counts()
            .unwrap()
            .iter()
            .all(|&c| (170..=190).contains(&c))
    );
    // The first row of the file: 0,0,5,13,9,1,0,0,... label 0.
    assert_eq!(
        &ds.example(0).unwrap()[..4],
        &[0.0, 0.0, 5.0 / 16.0, 13.0 / 16.0]
    );
    assert_eq!(ds.labels().unwrap()[0], 0);
    let img = digits_images().unwrap();
    assert_eq!(img.feature_shape(), vec![1, 8, 8]);
    assert_eq!(img.batch(&[0, 1]).x_shape, vec![2, 1, 8, 8]);
}

// ---------------------------------------------------------------- DataLoader

#[test]
fn loader_batch_shapes_and_drop_last() {
    let ds = InMemoryDataset::new(
        (0..60).map(|v| v as f32).collect(),
        vec![2, 3],
        Targets::Values {
            values: (0..20).map(|v| v as f32).collect(),
            width: 2,
        },
    )
    .unwrap();
    let ds = Arc::new(ds);
    let keep = DataLoader::new(ds.clone(), 4).unwrap();
    assert_eq!(keep.len(), 3);
    let batches: Vec<Batch> = keep.epoch(0).collect();
    let shapes: Vec<Vec<usize>> = batches.iter().map(|b| b.x_shape.clone()).collect();
    assert_eq!(shapes, vec![vec![4, 2, 3], vec![4, 2, 3], vec![2, 2, 3]]);
    assert_eq!(batches[2].x, (48..60).map(|v| v as f32).collect::<Vec<_>>());
    assert_eq!(
        batches[2].y,
        Targets::Values {
            values: vec![16.0, 17.0, 18.0, 19.0],
            width: 2
        }
    );
    let drop = DataLoader::new(ds, 4).unwrap().drop_last(true).shuffle(1);
    assert_eq!(drop.len(), 2);
    let it = drop.epoch(0);
    assert_eq!(it.len(), 2);
    assert!(it.map(|b| b.x_shape).all(|s| s == vec![4, 2, 3]));
    assert!(DataLoader::new(Arc::new(counting_dataset(3)), 0).is_err());
}

#[test]
fn loader_serves_every_example_once_per_epoch_with_matching_targets() {
    let loader = DataLoader::new(Arc::new(counting_dataset(103)), 10)
        .unwrap()
        .shuffle(7);
    for e in 0..3 {
        let mut seen = Vec::new();
        for b in loader.epoch(e) {
            let Targets::Classes { labels, .. } = &b.y else {
                panic!("classes")
            };
            for (x, l) in b.x.iter().zip(labels) {
                assert_eq!(*x as u32 % 3, *l, "label travels with its example");
                seen.push(*x as usize);
            }
        }
        assert_ne!(seen, (0..103).collect::<Vec<_>>(), "shuffled");
        seen.sort();
        assert_eq!(
            seen,
            (0..103).collect::<Vec<_>>(),
            "epoch {e}: each example once"
        );
    }
    // drop_last serves each example at most once and leaves out exactly n % batch.
    let loader = loader.drop_last(true);
    let mut ids = epoch_ids(&loader, 0);
    assert_eq!(ids.len(), 100);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100);
}

#[test]
fn loader_order_is_a_function_of_seed_and_epoch() {
    let ds: Arc<dyn Dataset> = Arc::new(counting_dataset(50));
    let a = DataLoader::new(ds.clone(), 8).unwrap().shuffle(42);
    let b = DataLoader::new(ds.clone(), 8).unwrap().shuffle(42);
    let c = DataLoader::new(ds.clone(), 8).unwrap().shuffle(43);
    // b skips epochs 0..3: a resumed run must still see a's epoch 3.
    let a_epochs: Vec<Vec<usize>> = (0..4).map(|e| epoch_ids(&a, e)).collect();
    assert_eq!(epoch_ids(&b, 3), a_epochs[3]);
    assert_eq!(a.order(3), a_epochs[3]);
    assert_ne!(a_epochs[3], a_epochs[2], "epochs differ");
    assert_ne!(epoch_ids(&c, 3), a_epochs[3], "seeds differ");
    let plain = DataLoader::new(ds, 8).unwrap();
    assert_eq!(epoch_ids(&plain, 5), (0..50).collect::<Vec<_>>());
}

/// A dataset that counts `batch` calls, to watch the worker thread.
struct Counting {
    calls: Arc<AtomicUsize>,
}

impl Dataset for Counting {
    fn len(&self) -> usize {
        100_000
    }
    fn feature_shape(&self) -> Vec<usize> {
        vec![1]
    }
    fn batch(&self, indices: &[usize]) -> Batch {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Batch {
            x: indices.iter().map(|&i| i as f32).collect(),
            x_shape: vec![indices.len(), 1],
            y: Targets::Values {
                values: vec![0.0; indices.len()],
                width: 1,
            },
        }
    }
}

#[test]
fn dropping_the_epoch_early_stops_the_worker() {
    let calls = Arc::new(AtomicUsize::new(0));
    let ds = Arc::new(Counting {
        calls: calls.clone(),
    });
    let loader = DataLoader::new(ds, 1).unwrap().prefetch(2);
    assert_eq!(loader.len(), 100_000);
    let mut it = loader.epoch(0);
    let first: Vec<Batch> = it.by_ref().take(3).collect();
    assert_eq!(first.len(), 3);
    drop(it); // joins the worker: returns only if the worker stopped
    let after_drop = calls.load(Ordering::SeqCst);
    // 3 taken, at most 2 buffered and 1 in flight when the channel closed.
    assert!(
        after_drop <= 3 + 2 + 1,
        "worker ran on: {after_drop} batches"
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        after_drop,
        "worker still running"
    );
}
