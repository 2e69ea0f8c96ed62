//! Opt-in capture of every dispatch, for `kiln explain` and `kiln train --trace`.
//!
//! [`Gpu::start_capture`](crate::Gpu::start_capture) turns it on for one device;
//! [`Gpu::finish_capture`](crate::Gpu::finish_capture) waits for the device and returns a
//! [`Capture`]: per dispatch its kernel key, workgroups, bytes bound, the caller's scope (phase,
//! op, shapes, the tuner's choice) and its GPU start and end. Off (the default) the encoder
//! checks one `Option` it already holds the lock of, and the scope calls below check one relaxed
//! atomic and return: nothing is formatted, allocated or synchronised.
//!
//! Times. Where the device has `TIMESTAMP_QUERY` each compute pass writes a timestamp at its
//! beginning and end into a query set (two per dispatch, [`crate::encoder::MAX_DISPATCHES`]
//! dispatches per batch); the batch resolves them into a buffer copied to a readable one in the
//! same submission, read at `finish_capture`. Without timestamps each submission is waited for
//! (capture only) and its wall time is split over its dispatches in proportion to the bytes they
//! bind, marked as estimated.
//!
//! Scope. The root crate names the phase ([`set_phase`]) and, around each backward rule, the op
//! ([`op_scope`]). A forward op learns its name only after its kernels ran, so it calls
//! [`claim`]: every captured dispatch since the previous claim without an op of its own is
//! given that op at finish. The tuner notes why it chose a configuration ([`note_choice`]);
//! the note sticks to the dispatches recorded until the next claim or op scope ends.

use std::cell::RefCell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// Work one dispatch does, from its shapes (see `launch::cost`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Floating-point operations (a multiply-add is 2).
    pub flops: u64,
    /// Bytes read and written in global memory, counting each operand once.
    pub bytes: u64,
}

/// Where a dispatch's time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeKind {
    /// GPU timestamps written at the beginning and end of its compute pass.
    Gpu,
    /// The wall time of its submission, split over the submission's dispatches (estimated).
    Estimated,
}

/// One captured dispatch. Times are nanoseconds since [`Capture::start`].
#[derive(Debug, Clone)]
pub struct DispatchRecord {
    /// Position in the capture (0, 1, ...).
    pub seq: usize,
    /// The kernel key's label, e.g. `matmul/vec4.wgsl:main[WG_X=8,...]`.
    pub label: String,
    /// File under `shaders/`.
    pub shader: &'static str,
    /// WGSL entry point.
    pub entry: &'static str,
    /// Specialisation (override constants), by name.
    pub constants: Vec<(&'static str, f64)>,
    /// Workgroups dispatched (x, y, z).
    pub workgroups: [u32; 3],
    /// Bytes of the storage buffers bound (their capacities; the params block not counted).
    pub bytes_bound: u64,
    /// The params block as recorded (the launchers' `#[repr(C)]` struct), for the cost model.
    pub params: Vec<u8>,
    /// FLOPs and bytes moved where the family has a cost model (`launch::cost`).
    pub cost: Option<Cost>,
    /// The caller's phase when recorded (`forward`, `backward`, `optimizer`, ...; empty if unset).
    pub phase: String,
    /// The op that ran it (empty when no op claimed it).
    pub op: String,
    /// The op's shapes as the caller wrote them, e.g. `[64, 784] @ [784, 128]`.
    pub shapes: String,
    /// Why the tuner chose this configuration, where a lookup ran for it.
    pub choice: Option<String>,
    /// Host time when the dispatch was recorded.
    pub host_ns: u64,
    /// GPU start and end, on the host clock: the GPU clock shifted by the least offset that
    /// starts no batch before the host submitted it.
    pub gpu_ns: Option<(u64, u64)>,
    /// How `gpu_ns` was obtained.
    pub time: TimeKind,
    /// Live pool bytes when the dispatch was recorded.
    pub live_bytes: u64,
}

impl DispatchRecord {
    /// GPU duration in nanoseconds (0 when unknown).
    pub fn duration_ns(&self) -> u64 {
        self.gpu_ns.map_or(0, |(a, b)| b.saturating_sub(a))
    }
}

/// One host upload (`Gpu::upload`), times in ns since [`Capture::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadRecord {
    /// Host start and end of the call.
    pub host_ns: (u64, u64),
    /// Bytes written.
    pub bytes: u64,
}

/// What one capture saw.
#[derive(Debug, Clone)]
pub struct Capture {
    /// When the capture started (the zero of every time in it).
    pub start: Instant,
    /// Every dispatch, in recording order.
    pub dispatches: Vec<DispatchRecord>,
    /// Every host upload, in order.
    pub uploads: Vec<UploadRecord>,
    /// GPU timestamps (true) or estimated wall time (false).
    pub gpu_timestamps: bool,
}

/// The `shaders/<file>:<line>` of `fn <entry>(` in the shader's own text (1-based), where found.
pub fn entry_line(shader: &str, entry: &str) -> Option<usize> {
    let src = crate::shaders::raw(shader)?;
    let needle = format!("fn {entry}(");
    src.lines()
        .position(|l| l.trim_start().starts_with(&needle) || l.contains(&format!(" {needle}")))
        .map(|i| i + 1)
}

/// Devices capturing now (a capture on any device turns the scope calls on).
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Dispatches captured so far, on every device (what claims are placed against).
static CAPTURED: AtomicU64 = AtomicU64::new(0);
/// Claims made while capturing: (dispatches captured when made, op, shapes).
static CLAIMS: Mutex<Vec<(u64, String, String)>> = Mutex::new(Vec::new());

#[derive(Default)]
struct Scope {
    phase: String,
    op: Option<(String, String)>,
    /// The shader folder the choice is for (`matmul`, `conv`, `attention`) and the reason.
    choice: Option<(&'static str, String)>,
}

thread_local! {
    static SCOPE: RefCell<Scope> = RefCell::new(Scope::default());
}

/// True while some device captures (the scope calls do nothing otherwise).
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed) > 0
}

/// Name the phase of the dispatches this thread records from now on (`forward`, `backward`,
/// `optimizer`, ...).
pub fn set_phase(phase: &str) {
    if active() {
        SCOPE.with(|s| phase.clone_into(&mut s.borrow_mut().phase));
    }
}

/// Ends an [`op_scope`], restoring the one around it.
pub struct OpScope(Option<Option<(String, String)>>);

impl Drop for OpScope {
    fn drop(&mut self) {
        if let Some(prev) = self.0.take() {
            SCOPE.with(|s| {
                let mut s = s.borrow_mut();
                s.op = prev;
                s.choice = None;
            });
        }
    }
}

/// Attribute the dispatches this thread records until the guard drops to `op` with `shapes`
/// (`shapes` is only called while capturing).
pub fn op_scope(op: &str, shapes: impl FnOnce() -> String) -> OpScope {
    if !active() {
        return OpScope(None);
    }
    let now = Some((op.to_string(), shapes()));
    OpScope(Some(
        SCOPE.with(|s| std::mem::replace(&mut s.borrow_mut().op, now)),
    ))
}

/// A forward op's kernels have run: give `op` (with `shapes`) to the dispatches captured since
/// the previous claim that have no op of their own.
///
/// Inside an [`op_scope`] (an op run by a backward rule) this does nothing: the scope names its
/// dispatches.
pub fn claim(op: &str, shapes: impl FnOnce() -> String) {
    if !active() || SCOPE.with(|s| s.borrow().op.is_some()) {
        return;
    }
    let at = CAPTURED.load(Ordering::SeqCst);
    if let Ok(mut c) = CLAIMS.lock() {
        c.push((at, op.to_string(), shapes()));
    }
    SCOPE.with(|s| s.borrow_mut().choice = None);
}

/// The tuner's reason for the configuration the next dispatches of kernels under
/// `shaders/<family>/` use (`text` only called while capturing).
pub fn note_choice(family: &'static str, text: impl FnOnce() -> String) {
    if active() {
        SCOPE.with(|s| s.borrow_mut().choice = Some((family, text())));
    }
}

/// The recording side, held by the encoder while a capture runs.
pub(crate) struct Recorder {
    pub(crate) start: Instant,
    pub(crate) records: Vec<DispatchRecord>,
    pub(crate) uploads: Vec<UploadRecord>,
    /// Query set, resolve buffer and device where timestamps are written.
    pub(crate) timestamps: Option<Timestamps>,
    /// Per submitted batch: its first record, and its readable tick buffer or (no timestamps)
    /// its host wall time (start, end ns).
    pub(crate) batches: Vec<(usize, BatchTimes)>,
    /// First record of the pending batch.
    pub(crate) batch_first: usize,
    /// The device (waited on per batch when there are no timestamps).
    pub(crate) device: wgpu::Device,
    /// Claims made before this capture started (skipped).
    claims_from: usize,
    /// Dispatches captured on any device before this capture started.
    captured_before: u64,
}

pub(crate) struct Timestamps {
    pub(crate) set: wgpu::QuerySet,
    pub(crate) resolve: wgpu::Buffer,
}

pub(crate) enum BatchTimes {
    /// The readable tick buffer and the host time of the submission.
    Ticks(wgpu::Buffer, u64),
    /// Host wall time of the submission, from submit to done.
    Wall(u64, u64),
}

impl Recorder {
    /// A recorder for batches of up to `batch` dispatches (two timestamps each).
    pub(crate) fn new(device: &wgpu::Device, timestamps: bool, batch: usize) -> Recorder {
        let queries = 2 * batch as u32;
        let timestamps = timestamps.then(|| Timestamps {
            set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kiln.capture"),
                ty: wgpu::QueryType::Timestamp,
                count: queries,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kiln.capture.resolve"),
                size: queries as u64 * wgpu::QUERY_SIZE as u64,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
        });
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        let claims_from = CLAIMS.lock().map(|c| c.len()).unwrap_or(0);
        Recorder {
            start: Instant::now(),
            records: Vec::new(),
            uploads: Vec::new(),
            timestamps,
            batches: Vec::new(),
            batch_first: 0,
            device: device.clone(),
            claims_from,
            captured_before: CAPTURED.load(Ordering::SeqCst),
        }
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Add the record of a dispatch about to be recorded (its scope from this thread).
    pub(crate) fn push(&mut self, key: &crate::KernelKey, label: &str, extra: RecordExtra<'_>) {
        let (phase, op, choice) = SCOPE.with(|s| {
            let s = s.borrow();
            let choice = s.choice.as_ref().filter(|c| {
                key.shader.starts_with(c.0) && key.shader[c.0.len()..].starts_with('/')
            });
            (s.phase.clone(), s.op.clone(), choice.map(|c| c.1.clone()))
        });
        let (op, shapes) = op.unwrap_or_default();
        let host_ns = self.now_ns();
        self.records.push(DispatchRecord {
            seq: self.records.len(),
            label: label.to_string(),
            shader: key.shader,
            entry: key.entry,
            constants: key.constants.clone(),
            workgroups: extra.workgroups,
            bytes_bound: extra.bytes_bound,
            params: extra.params.to_vec(),
            cost: None,
            phase,
            op,
            shapes,
            choice,
            host_ns,
            gpu_ns: None,
            time: if self.timestamps.is_some() {
                TimeKind::Gpu
            } else {
                TimeKind::Estimated
            },
            live_bytes: extra.live_bytes,
        });
        CAPTURED.fetch_add(1, Ordering::SeqCst);
    }

    /// Give the claimed ops to the records without one (see the module notes).
    fn apply_claims(&mut self) {
        let claims = CLAIMS
            .lock()
            .map(|c| c.get(self.claims_from..).unwrap_or(&[]).to_vec())
            .unwrap_or_default();
        let mut next = 0;
        for r in &mut self.records {
            let at = self.captured_before + r.seq as u64;
            while next < claims.len() && claims[next].0 <= at {
                next += 1;
            }
            if r.op.is_empty()
                && let Some((_, op, shapes)) = claims.get(next)
            {
                r.op = op.clone();
                r.shapes = shapes.clone();
            }
        }
    }

    /// Read the batches' times into the records (the device has finished them) and return the
    /// capture.
    pub(crate) fn finish(mut self, device: &wgpu::Device, period_ns: f64) -> Capture {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
        self.apply_claims();
        let batches = std::mem::take(&mut self.batches);
        let ns = |t: u64| (t as f64 * period_ns) as i128;
        let ticks: Vec<Option<Vec<u64>>> = batches
            .iter()
            .map(|(_, t)| match t {
                BatchTimes::Ticks(buf, _) => read_ticks(device, buf),
                BatchTimes::Wall(..) => None,
            })
            .collect();
        // GPU clock -> host clock, one offset for the capture: the smallest that puts no batch's
        // first dispatch before the host submitted it.
        let offset = batches
            .iter()
            .zip(&ticks)
            .filter_map(|((_, t), k)| match (t, k) {
                (BatchTimes::Ticks(_, submit), Some(k)) if !k.is_empty() => {
                    Some(*submit as i128 - ns(k[0]))
                }
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let at = |t: u64| (ns(t) + offset).max(0) as u64;
        for (i, ((first, times), ticks)) in batches.iter().zip(&ticks).enumerate() {
            let end = batches.get(i + 1).map_or(self.records.len(), |b| b.0);
            let recs = &mut self.records[*first..end];
            match times {
                BatchTimes::Ticks(..) => {
                    let Some(ticks) = ticks else { continue };
                    for (r, pair) in recs.iter_mut().zip(ticks.chunks_exact(2)) {
                        r.gpu_ns = Some((at(pair[0]), at(pair[1]).max(at(pair[0]))));
                    }
                }
                BatchTimes::Wall(a, b) => {
                    let total: u64 = recs.iter().map(|r| r.bytes_bound.max(1)).sum();
                    let mut t = *a as f64;
                    let span = b.saturating_sub(*a) as f64;
                    for r in recs.iter_mut() {
                        let d = span * r.bytes_bound.max(1) as f64 / total.max(1) as f64;
                        r.gpu_ns = Some((t as u64, (t + d) as u64));
                        t += d;
                    }
                }
            }
        }
        Capture {
            start: self.start,
            gpu_timestamps: self.timestamps.is_some(),
            dispatches: self.records,
            uploads: self.uploads,
        }
    }
}

/// What the encoder knows of a dispatch besides its key.
pub(crate) struct RecordExtra<'a> {
    pub(crate) workgroups: [u32; 3],
    pub(crate) bytes_bound: u64,
    pub(crate) params: &'a [u8],
    pub(crate) live_bytes: u64,
}

/// Map a resolved tick buffer (the device has finished with it) and read it.
fn read_ticks(device: &wgpu::Device, buf: &wgpu::Buffer) -> Option<Vec<u64>> {
    let (tx, rx) = std::sync::mpsc::channel();
    buf.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    device.poll(wgpu::PollType::wait_indefinitely()).ok()?;
    rx.recv().ok()?.ok()?;
    let ticks = {
        let data = buf.get_mapped_range(..).ok()?;
        bytemuck::cast_slice::<u8, u64>(&data).to_vec()
    };
    buf.unmap();
    Some(ticks)
}
