//! [`DataLoader`]: batches of a [`Dataset`] in a seeded order, gathered on a background thread.
//!
//! The order of epoch `e` is [`permutation`]`(len, seed, e)`: a pure function of `(seed, e)`, so a
//! run resumed at epoch `e` sees exactly the batches it would have seen. A worker thread gathers
//! batches into a bounded channel (`prefetch` batches ahead, 2 by default) while the caller uploads
//! and trains on the previous one. Dropping the [`Epoch`] iterator early closes the channel; the
//! worker's next send fails, it returns, and the drop joins it.
//!
//! A loader may also [`augment`](DataLoader::augment) its batches (training only): batch `i` of
//! epoch `e` goes through an [`Augment`] seeded by [`augment_seed`]`(seed, e, i)`, on the worker.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::error::{DataError, invalid};
use super::split::permutation;
use super::{Batch, Dataset};

/// Batches of a dataset, optionally shuffled per epoch.
///
/// ```
/// use std::sync::Arc;
/// use kiln::data::{DataLoader, InMemoryDataset, Targets};
/// let ds = InMemoryDataset::new(
///     (0..10).map(|v| v as f32).collect(),
///     vec![1],
///     Targets::Classes { labels: vec![0; 10], num_classes: 1 },
/// )?;
/// let loader = DataLoader::new(Arc::new(ds), 4)?.shuffle(42).drop_last(true);
/// assert_eq!(loader.len(), 2);
/// let shapes: Vec<Vec<usize>> = loader.epoch(0).map(|b| b.x_shape).collect();
/// assert_eq!(shapes, vec![vec![4, 1], vec![4, 1]]);
/// # Ok::<(), kiln::data::DataError>(())
/// ```
#[derive(Clone)]
pub struct DataLoader {
    dataset: Arc<dyn Dataset>,
    batch_size: usize,
    seed: Option<u64>,
    drop_last: bool,
    prefetch: usize,
    augment: Option<(Arc<dyn Augment>, u64)>,
}

/// A random transformation of host batches (training-time augmentation such as random crops
/// and flips), applied by a [`DataLoader`] on its worker thread.
pub trait Augment: Send + Sync {
    /// Transform `batch` in place. The result must be a pure function of `(batch, seed)`.
    fn augment(&self, batch: &mut Batch, seed: u64);
}

/// The augmentation seed of batch `batch` of epoch `epoch` for a loader seeded with `seed`:
/// a SplitMix64 hash of the three, so every batch of every epoch draws fresh, reproducible
/// randomness (a resumed run sees the same augmented batches).
pub fn augment_seed(seed: u64, epoch: u64, batch: u64) -> u64 {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    mix(mix(mix(seed) ^ epoch) ^ batch)
}

impl std::fmt::Debug for DataLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataLoader")
            .field("examples", &self.dataset.len())
            .field("batch_size", &self.batch_size)
            .field("seed", &self.seed)
            .field("drop_last", &self.drop_last)
            .field("prefetch", &self.prefetch)
            .field("augment_seed", &self.augment.as_ref().map(|a| a.1))
            .finish()
    }
}

impl DataLoader {
    /// Batches of `batch_size` in file order, keeping a short last batch, 2 batches prefetched.
    pub fn new(dataset: Arc<dyn Dataset>, batch_size: usize) -> Result<Self, DataError> {
        if batch_size == 0 {
            return invalid("data loader: batch size must be at least 1");
        }
        Ok(DataLoader {
            dataset,
            batch_size,
            seed: None,
            drop_last: false,
            prefetch: 2,
            augment: None,
        })
    }

    /// Pass every batch through `augment`, seeded per batch by [`augment_seed`]`(seed, epoch,
    /// batch)`. For training loaders only: evaluation must see the data as it is.
    pub fn augment(mut self, augment: Arc<dyn Augment>, seed: u64) -> Self {
        self.augment = Some((augment, seed));
        self
    }

    /// Shuffle every epoch; the order of epoch `e` depends only on `(seed, e)`.
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Leave out the last batch when it is shorter than the batch size.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// How many batches the worker may gather ahead of the consumer (at least 1).
    pub fn prefetch(mut self, batches: usize) -> Self {
        self.prefetch = batches.max(1);
        self
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    /// Examples per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        let n = self.dataset.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// True when an epoch yields no batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The example indices of epoch `epoch`, in the order they are served (before `drop_last`).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let n = self.dataset.len();
        match self.seed {
            Some(seed) => permutation(n, seed, epoch),
            None => (0..n).collect(),
        }
    }

    /// The batches of epoch `epoch`, gathered on a background thread.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        self.epoch_from(epoch, 0)
    }

    /// The batches of epoch `epoch` from batch index `first` on (0-based; batches before it are
    /// never gathered): exactly the tail of [`DataLoader::epoch`], augmentation included, so a
    /// run resumed inside an epoch sees what an uninterrupted one would. `first >= len()` gives
    /// an empty epoch.
    pub fn epoch_from(&self, epoch: u64, first: usize) -> Epoch {
        let first = first.min(self.len());
        let mut order = self.order(epoch);
        order.truncate(self.len() * self.batch_size);
        let batches = self.len() - first;
        let skip = first * self.batch_size;
        let (tx, rx) = sync_channel(self.prefetch);
        let dataset = Arc::clone(&self.dataset);
        let batch_size = self.batch_size;
        let augment = self.augment.clone();
        let worker = std::thread::Builder::new()
            .name(format!("kiln-loader-e{epoch}"))
            .spawn(move || {
                let aug = augment.as_ref().map(|(a, s)| (a.as_ref(), *s, epoch));
                produce(dataset.as_ref(), &order, skip, batch_size, aug, tx)
            });
        match worker {
            Ok(handle) => Epoch {
                source: Source::Thread {
                    rx: Some(rx),
                    handle: Some(handle),
                },
                remaining: batches,
            },
            // No thread to be had (a sandbox or an exhausted process): gather inline instead.
            Err(_) => Epoch {
                source: Source::Inline {
                    dataset: Arc::clone(&self.dataset),
                    order: self.order(epoch),
                    batch_size,
                    next: skip,
                    augment: self.augment.clone().map(|(a, s)| (a, s, epoch)),
                },
                remaining: batches,
            },
        }
    }
}

/// An augmentation with its loader seed and the epoch.
type EpochAugment<'a> = Option<(&'a dyn Augment, u64, u64)>;

/// Gather batch `i` of `order`, augmented when asked.
fn gather(dataset: &dyn Dataset, chunk: &[usize], i: usize, aug: EpochAugment<'_>) -> Batch {
    let mut b = dataset.batch(chunk);
    if let Some((a, seed, epoch)) = aug {
        a.augment(&mut b, augment_seed(seed, epoch, i as u64));
    }
    b
}

fn produce(
    dataset: &dyn Dataset,
    order: &[usize],
    skip: usize,
    batch_size: usize,
    aug: EpochAugment<'_>,
    tx: SyncSender<Batch>,
) {
    let first = skip / batch_size;
    for (i, chunk) in order[skip..].chunks(batch_size).enumerate() {
        if tx.send(gather(dataset, chunk, first + i, aug)).is_err() {
            return; // the consumer dropped the iterator
        }
    }
}

enum Source {
    Thread {
        rx: Option<Receiver<Batch>>,
        handle: Option<JoinHandle<()>>,
    },
    Inline {
        dataset: Arc<dyn Dataset>,
        order: Vec<usize>,
        batch_size: usize,
        next: usize,
        augment: Option<(Arc<dyn Augment>, u64, u64)>,
    },
}

/// The batches of one epoch (from [`DataLoader::epoch`]). Dropping it early stops and joins the
/// worker thread.
pub struct Epoch {
    source: Source,
    remaining: usize,
}

impl Iterator for Epoch {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.remaining == 0 {
            return None;
        }
        let batch = match &mut self.source {
            Source::Thread { rx, handle } => match rx.as_ref().map(|r| r.recv()) {
                Some(Ok(b)) => b,
                _ => {
                    // The worker ended early: it can only have panicked in `Dataset::batch`.
                    // Re-raise that panic here rather than end the epoch short in silence.
                    if let Some(h) = handle.take() {
                        if let Err(p) = h.join() {
                            std::panic::resume_unwind(p);
                        }
                    }
                    self.remaining = 0;
                    return None;
                }
            },
            Source::Inline {
                dataset,
                order,
                batch_size,
                next,
                augment,
            } => {
                let end = (*next + *batch_size).min(order.len());
                let aug = augment.as_ref().map(|(a, s, e)| (a.as_ref(), *s, *e));
                let b = gather(
                    dataset.as_ref(),
                    &order[*next..end],
                    *next / *batch_size,
                    aug,
                );
                *next = end;
                b
            }
        };
        self.remaining -= 1;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Epoch {}

impl Drop for Epoch {
    fn drop(&mut self) {
        if let Source::Thread { rx, handle } = &mut self.source {
            drop(rx.take()); // a blocked or later send now fails, and the worker returns
            if let Some(h) = handle.take() {
                let _ = h.join(); // a worker panic was already reported, or nobody is asking
            }
        }
    }
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoch")
            .field("remaining", &self.remaining)
            .finish()
    }
}
