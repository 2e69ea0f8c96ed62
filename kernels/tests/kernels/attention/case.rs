//! Attention test cases both crates' tests use (the root crate's `tests/ops/attention.rs`
//! includes this file by path): seeded (Q, K, V, mask) at given sizes, the rungs to try, the
//! launchers run directly and their check against the f64 CPU twin.
#![allow(dead_code)] // each including crate uses a part

use crate::common::{f64s, gpu, rand_vec, seed};
use kiln_kernels::launch::attention::{
    self as ak, AttnConfig, AttnInputs, AttnShape, AttnTiles, AttnVariant,
};
use kiln_kernels::reference::Tolerance;
use kiln_kernels::reference::attention as cpu;
use kiln_kernels::{GpuBuffer, Operand};

/// f32 dot products of length D and sums over up to ~1000 keys with exp, against f64.
pub const FWD: Tolerance =
    Tolerance::new(3e-4, 3e-5, "f32 online softmax over D- and Tk-long sums");
/// Gradients sum ~Tq * D products of f32 values, in another order than the twin.
pub const GRAD: Tolerance = Tolerance::new(1e-3, 1e-4, "f32 fused backward vs f64, long sums");

/// One test case: sizes, masks and seeded data.
pub struct Case {
    /// Sizes, scale and causality.
    pub s: AttnShape,
    /// Q: (B, H, Tq, D).
    pub q: Vec<f32>,
    /// K: (B, H, Tk, D).
    pub k: Vec<f32>,
    /// V: (B, H, Tk, D).
    pub v: Vec<f32>,
    /// Key-padding mask (B, Tk), 1 = kept.
    pub keep: Option<Vec<f32>>,
}

impl Case {
    /// Seeded data for (B, H, Tq, Tk, D), causal or not, with a key mask or not.
    pub fn new(
        b: usize,
        h: usize,
        tq: usize,
        tk: usize,
        d: usize,
        causal: bool,
        mask: bool,
    ) -> Case {
        let tag = format!("attn {b} {h} {tq} {tk} {d} {causal} {mask}");
        let sd = seed(&tag);
        let keep = mask.then(|| {
            // Mask about a third of the keys, but keep the first key of batch 0 so not all go.
            let r = rand_vec(b * tk, sd ^ 4, 0.0, 1.0);
            r.iter()
                .enumerate()
                .map(|(n, &x)| f32::from(n == 0 || x > 0.33))
                .collect()
        });
        Case {
            s: AttnShape {
                batch: b,
                heads: h,
                tq,
                tk,
                d,
                scale: 1.0 / (d as f32).sqrt(),
                causal,
            },
            q: rand_vec(b * h * tq * d, sd ^ 1, -2.0, 2.0),
            k: rand_vec(b * h * tk * d, sd ^ 2, -2.0, 2.0),
            v: rand_vec(b * h * tk * d, sd ^ 3, -1.0, 1.0),
            keep,
        }
    }

    /// The case's sizes and flags, for messages.
    pub fn name(&self) -> String {
        let s = &self.s;
        let mask = self.keep.is_some();
        let (b, h, tq, tk, d, causal) = (s.batch, s.heads, s.tq, s.tk, s.d, s.causal);
        format!("B{b} H{h} Tq{tq} Tk{tk} D{d} causal={causal} mask={mask}")
    }

    /// The twin's forward: (O, L).
    pub fn cpu_forward(&self) -> (Vec<f64>, Vec<f64>) {
        let keep = self.keep.as_deref().map(f64s);
        let (q, k, v) = (f64s(&self.q), f64s(&self.k), f64s(&self.v));
        cpu::forward(&self.s, &q, &k, &v, keep.as_deref())
    }

    /// The twin's backward from `dout`: (dQ, dK, dV).
    pub fn cpu_backward(&self, dout: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let keep = self.keep.as_deref().map(f64s);
        let (q, k, v) = (f64s(&self.q), f64s(&self.k), f64s(&self.v));
        cpu::backward(&self.s, &q, &k, &v, keep.as_deref(), &f64s(dout))
    }
}

/// (Tq, Tk, D) sampled from {1, 7, 129, 257} x {1, 7, 129, 257} x {16, 32, 64}; the forward
/// tests take the first nine, the tiled rung's tests all ten.
const GRID: [(usize, usize, usize); 10] = [
    (1, 1, 16),
    (7, 7, 32),
    (129, 129, 64),
    (257, 257, 16),
    (1, 257, 32),
    (7, 129, 64),
    (129, 7, 16),
    (257, 129, 32),
    (129, 257, 64),
    (257, 257, 64),
];

/// The first `n` sizes of the grid as cases of B = H = 2, causal at even positions, key-masked
/// at all but every third.
pub fn grid_cases(n: usize) -> impl Iterator<Item = Case> {
    GRID[..n].iter().enumerate().map(|(n, &(tq, tk, d))| {
        let causal = n.is_multiple_of(2);
        let mask = n % 3 != 1;
        Case::new(2, 2, tq, tk, d, causal, mask)
    })
}

/// Every rung, and the tiled one also with small tiles (many tiles and workgroups per head,
/// rows past the end inside a workgroup).
pub fn configs() -> Vec<AttnConfig> {
    use AttnVariant::{Block, Panel, Row, Tiled};
    let small = [(2, 8), (8, 4)].map(|(wg, bc)| AttnConfig {
        variant: Tiled,
        tiles: AttnTiles { wg, bc },
    });
    let rungs = [Row, Block, Panel, Tiled].map(AttnConfig::of);
    rungs.into_iter().chain(small).collect()
}

/// `v` in a fresh buffer (at least one element).
fn upload(v: &[f32]) -> GpuBuffer {
    let g = gpu();
    let b = g
        .alloc(4 * v.len().max(1) as u64, "attention test")
        .unwrap();
    g.upload(&b, 0, bytemuck::cast_slice(v));
    b
}

/// The first `n` f32 of a buffer.
fn read(b: &GpuBuffer, n: usize) -> Vec<f32> {
    bytemuck::cast_slice(&gpu().read(b, 0, 4 * n as u64).unwrap()).to_vec()
}

/// The launchers run directly (forward, then backward from `dout` where given, dispatches split
/// into `chunk` rows where non-zero): [o, lse, dq, dk, dv] (the gradients empty without `dout`).
pub fn run_kernels(c: &Case, cfg: AttnConfig, chunk: usize, dout: Option<&[f32]>) -> [Vec<f32>; 5] {
    let (s, g) = (&c.s, gpu());
    let (rows, krows) = (s.batch * s.heads * s.tq, s.batch * s.heads * s.tk);
    let (q, k, v) = (upload(&c.q), upload(&c.k), upload(&c.v));
    let keep = c.keep.as_deref().map(upload);
    let [q, k, v] = [&q, &k, &v].map(Operand::whole);
    let x = AttnInputs {
        q,
        k,
        v,
        keep: keep.as_ref().map(Operand::whole),
    };
    let alloc = |n: usize| upload(&vec![f32::NAN; n]);
    let (o, l) = (alloc(rows * s.d), alloc(rows));
    ak::forward(&g, s, cfg, x, (&o, &l), chunk).unwrap();
    let (o_out, l_out) = (read(&o, rows * s.d), read(&l, rows));
    let Some(dout) = dout else {
        return [o_out, l_out, Vec::new(), Vec::new(), Vec::new()];
    };
    let (dq, dk, dv) = (alloc(rows * s.d), alloc(krows * s.d), alloc(krows * s.d));
    let dout = upload(dout);
    let grads = (&dq, &dk, &dv);
    ak::backward(&g, s, cfg, x, &dout, (&o, &l), grads, chunk).unwrap();
    let (dq, dk, dv) = (
        read(&dq, rows * s.d),
        read(&dk, krows * s.d),
        read(&dv, krows * s.d),
    );
    [o_out, l_out, dq, dk, dv]
}

/// Forward (O, L) and backward (dQ, dK, dV) of `cfg` through the launchers against the f64 twin.
pub fn check_launcher_vs_twin(c: &Case, cfg: AttnConfig, chunk: usize) {
    let s = &c.s;
    let n = s.batch * s.heads * s.tq * s.d;
    let dout = rand_vec(n, seed(&c.name()) ^ 11, -1.0, 1.0);
    let (o, l) = c.cpu_forward();
    let (dq, dk, dv) = c.cpu_backward(&dout);
    let got = run_kernels(c, cfg, chunk, Some(&dout));
    let name = format!("{} chunk {chunk} {}", cfg.name(), c.name());
    FWD.assert_close(&format!("O {name}"), &got[0], &o);
    FWD.assert_close(&format!("L {name}"), &got[1], &l);
    for (n, want) in [dq, dk, dv].iter().enumerate() {
        let which = ["dq", "dk", "dv"][n];
        GRAD.assert_close(&format!("{which} {name}"), &got[n + 2], want);
    }
}
