//! Fused scaled-dot-product attention: forward (O and the saved log-sum-exp rows) against the f64
//! CPU twin and against the composition from primitives, at awkward Tq / Tk / D, with causal and
//! key-padding masks; the fused backward against the twin, the composed gradients and finite
//! differences; end-aligned causal masks (KV-cache decode), fully masked rows, the lavapipe loop
//! limit (chunked dispatches), views, and shape errors.

use crate::common;

use common::*;
use kiln::Tensor;
use kiln::ops::{AttentionOptions, attention_composed, scaled_dot_product_attention};
use kiln_kernels::launch::attention::{self as ak, AttnConfig, AttnShape, AttnTiles, AttnVariant};
use kiln_kernels::reference::attention as cpu;

/// f32 dot products of length D and sums over up to ~1000 keys with exp, against f64.
const FWD: Tolerance = Tolerance::new(3e-4, 3e-5, "f32 online softmax over D- and Tk-long sums");
/// Gradients sum ~Tq * D products of f32 values, in another order than the twin.
const GRAD: Tolerance = Tolerance::new(1e-3, 1e-4, "f32 fused backward vs f64, long sums");

/// One test case: sizes, masks and seeded data.
struct Case {
    s: AttnShape,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    keep: Option<Vec<f32>>,
}

impl Case {
    fn new(b: usize, h: usize, tq: usize, tk: usize, d: usize, causal: bool, mask: bool) -> Case {
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

    fn name(&self) -> String {
        let s = &self.s;
        format!(
            "B{} H{} Tq{} Tk{} D{} causal={} mask={}",
            s.batch,
            s.heads,
            s.tq,
            s.tk,
            s.d,
            s.causal,
            self.keep.is_some()
        )
    }

    /// GPU tensors (q, k, v) requiring grad, and the options.
    fn tensors(&self) -> (Tensor, Tensor, Tensor, AttentionOptions) {
        let s = &self.s;
        let q = tensor(&self.q, &[s.batch, s.heads, s.tq, s.d]).requires_grad();
        let k = tensor(&self.k, &[s.batch, s.heads, s.tk, s.d]).requires_grad();
        let v = tensor(&self.v, &[s.batch, s.heads, s.tk, s.d]).requires_grad();
        let opts = AttentionOptions {
            causal: s.causal,
            scale: None,
            key_padding_mask: self.keep.as_ref().map(|m| tensor(m, &[s.batch, s.tk])),
        };
        (q, k, v, opts)
    }

    fn cpu_forward(&self) -> (Vec<f64>, Vec<f64>) {
        let keep = self.keep.as_deref().map(f64s);
        cpu::forward(
            &self.s,
            &f64s(&self.q),
            &f64s(&self.k),
            &f64s(&self.v),
            keep.as_deref(),
        )
    }
}

/// Forward O through the op, and L through the launcher, against the twin.
fn check_forward(c: &Case) {
    let (q, k, v, opts) = c.tensors();
    let (want_o, want_l) = c.cpu_forward();
    let o = scaled_dot_product_attention(&q, &k, &v, &opts).unwrap();
    FWD.assert_close(
        &format!("O {}", c.name()),
        &o.to_vec::<f32>().unwrap(),
        &want_o,
    );
    let g = gpu();
    let rows = c.s.batch * c.s.heads * c.s.tq;
    let keep = opts.key_padding_mask.as_ref();
    for cfg in configs() {
        let out = g.alloc(4 * (rows * c.s.d).max(1) as u64, "o").unwrap();
        let lse = g.alloc(4 * rows.max(1) as u64, "lse").unwrap();
        ak::forward(
            &g,
            &c.s,
            cfg,
            q.operand(),
            k.operand(),
            v.operand(),
            keep.map(Tensor::operand),
            &out,
            &lse,
            0,
        )
        .unwrap();
        let name = format!("{} {}", cfg.name(), c.name());
        FWD.assert_close(&format!("O {name}"), &read(&out, rows * c.s.d), &want_o);
        FWD.assert_close(&format!("L {name}"), &read(&lse, rows), &want_l);
    }
}

/// Every rung, and the tiled one also with small tiles (many tiles and workgroups per head,
/// rows past the end inside a workgroup).
fn configs() -> Vec<AttnConfig> {
    let tiled = |wg, bc| AttnConfig {
        variant: AttnVariant::Tiled,
        tiles: AttnTiles { wg, bc },
    };
    vec![
        AttnConfig::of(AttnVariant::Row),
        AttnConfig::of(AttnVariant::Block),
        AttnConfig::of(AttnVariant::Panel),
        AttnConfig::of(AttnVariant::Tiled),
        tiled(2, 8),
        tiled(8, 4),
    ]
}

/// The first `n` f32 of a buffer.
fn read(b: &kiln_kernels::GpuBuffer, n: usize) -> Vec<f32> {
    bytemuck::cast_slice(&gpu().read(b, 0, 4 * n as u64).unwrap()).to_vec()
}

#[test]
fn forward_matches_cpu_twin_at_awkward_sizes() {
    // (Tq, Tk, D) sampled from {1, 7, 129, 257} x {1, 7, 129, 257} x {16, 32, 64}.
    let grid = [
        (1, 1, 16),
        (7, 7, 32),
        (129, 129, 64),
        (257, 257, 16),
        (1, 257, 32),
        (7, 129, 64),
        (129, 7, 16),
        (257, 129, 32),
        (129, 257, 64),
    ];
    for (n, &(tq, tk, d)) in grid.iter().enumerate() {
        let causal = n.is_multiple_of(2);
        let mask = n % 3 != 1;
        check_forward(&Case::new(2, 2, tq, tk, d, causal, mask));
    }
}

#[test]
fn forward_matches_composed() {
    for &(tq, tk, d, causal, mask) in &[
        (7, 7, 16, true, false),
        (129, 129, 32, true, true),
        (1, 257, 64, false, true),
        (257, 7, 32, false, false),
    ] {
        let c = Case::new(2, 3, tq, tk, d, causal, mask);
        let (q, k, v, opts) = c.tensors();
        let fused = scaled_dot_product_attention(&q, &k, &v, &opts).unwrap();
        let composed = attention_composed(&q, &k, &v, &opts).unwrap();
        FWD.assert_close(
            &format!("fused vs composed {}", c.name()),
            &fused.to_vec::<f32>().unwrap(),
            &composed.to_vec::<f32>().unwrap(),
        );
    }
}

/// Gradients of `sum(O * w)` from the fused op, against the twin's backward and the composed op.
fn check_backward(c: &Case) {
    let s = &c.s;
    let w = rand_vec(
        s.batch * s.heads * s.tq * s.d,
        seed(&c.name()) ^ 9,
        0.5,
        1.5,
    );
    let wt = tensor(&w, &[s.batch, s.heads, s.tq, s.d]);
    let keep = c.keep.as_deref().map(f64s);
    let (dq, dk, dv) = cpu::backward(
        s,
        &f64s(&c.q),
        &f64s(&c.k),
        &f64s(&c.v),
        keep.as_deref(),
        &f64s(&w),
    );
    let grads = |composed: bool| {
        let (q, k, v, opts) = c.tensors();
        let o = if composed {
            attention_composed(&q, &k, &v, &opts).unwrap()
        } else {
            scaled_dot_product_attention(&q, &k, &v, &opts).unwrap()
        };
        o.mul(&wt).unwrap().sum().unwrap().backward().unwrap();
        [q, k, v].map(|t| t.grad().unwrap().to_vec::<f32>().unwrap())
    };
    let fused = grads(false);
    let composed = grads(true);
    for (n, want) in [dq, dk, dv].iter().enumerate() {
        let which = ["dq", "dk", "dv"][n];
        GRAD.assert_close(&format!("{which} vs twin {}", c.name()), &fused[n], want);
        GRAD.assert_close(
            &format!("{which} vs composed {}", c.name()),
            &fused[n],
            &composed[n],
        );
    }
}

#[test]
fn backward_matches_cpu_twin_and_composed() {
    for &(tq, tk, d, causal, mask) in &[
        (1, 1, 16, false, false),
        (7, 7, 16, true, true),
        (129, 129, 32, true, false),
        (1, 257, 64, false, true),
        (257, 7, 32, true, true),
        (7, 129, 64, true, false),
        // D not a multiple of 4: the row kernels.
        (17, 9, 6, true, true),
    ] {
        check_backward(&Case::new(2, 2, tq, tk, d, causal, mask));
    }
}

#[test]
fn gradcheck_against_finite_differences() {
    for &(causal, mask) in &[(false, false), (true, true)] {
        let c = Case::new(2, 2, 3, 5, 4, causal, mask);
        let s = c.s;
        let keep = c.keep.clone();
        let keep_t = keep.as_ref().map(|m| tensor(m, &[2, 5]));
        let inputs = [
            Input::new(c.q.clone(), &[2, 2, 3, 4]),
            Input::new(c.k.clone(), &[2, 2, 5, 4]),
            Input::new(c.v.clone(), &[2, 2, 5, 4]),
        ];
        gradcheck(
            &format!("attention {}", c.name()),
            &inputs,
            |t| {
                let opts = AttentionOptions {
                    causal,
                    scale: None,
                    key_padding_mask: keep_t.clone(),
                };
                scaled_dot_product_attention(&t[0], &t[1], &t[2], &opts)
            },
            |x| {
                let keep = keep.as_deref().map(f64s);
                cpu::forward(&s, &x[0], &x[1], &x[2], keep.as_deref()).0
            },
            GradTol::default(),
        );
    }
}

#[test]
fn causal_aligns_to_the_end_for_kv_cache_decode() {
    // The last query of a causal self-attention over T keys equals a decode step: Tq = 1 with
    // all T keys visible.
    let c = Case::new(1, 2, 9, 9, 16, true, false);
    let (q, k, v, opts) = c.tensors();
    let full = scaled_dot_product_attention(&q, &k, &v, &opts).unwrap();
    let last_q = q.narrow(2, 8, 1).unwrap();
    let step = scaled_dot_product_attention(&last_q, &k, &v, &opts).unwrap();
    FWD.assert_close(
        "decode step vs last row",
        &step.to_vec::<f32>().unwrap(),
        &full
            .narrow(2, 8, 1)
            .unwrap()
            .contiguous()
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
    );
    // Tq = 3, Tk = 5: query i sees keys j <= i + 2 (checked against the twin's own mask rule).
    check_forward(&Case::new(1, 1, 3, 5, 16, true, false));
    // Tq > Tk: the first Tq - Tk queries see nothing.
    check_forward(&Case::new(1, 1, 5, 3, 16, true, false));
}

#[test]
fn fully_masked_rows_output_zero_not_nan() {
    let mut c = Case::new(2, 2, 4, 6, 16, false, true);
    // Batch 1 masks every key: its outputs and gradients are 0.
    let keep = c.keep.as_mut().unwrap();
    keep[6..].iter_mut().for_each(|x| *x = 0.0);
    check_forward(&c);
    check_backward(&c);
    let (q, k, v, opts) = c.tensors();
    for (name, o) in [
        (
            "fused",
            scaled_dot_product_attention(&q, &k, &v, &opts).unwrap(),
        ),
        ("composed", attention_composed(&q, &k, &v, &opts).unwrap()),
    ] {
        let y = o.to_vec::<f32>().unwrap();
        assert!(
            y[2 * 4 * 16..].iter().all(|&x| x == 0.0),
            "{name}: masked rows not 0"
        );
        assert!(
            y[..2 * 4 * 16].iter().any(|&x| x != 0.0),
            "{name}: kept rows all 0"
        );
    }
    // Tq > Tk causal: rows without keys, gradients finite.
    check_backward(&Case::new(1, 2, 6, 2, 16, true, false));
    // A u32 mask works like the f32 one.
    let (q, k, v, mut opts) = c.tensors();
    let want = scaled_dot_product_attention(&q, &k, &v, &opts)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let m32: Vec<u32> = c
        .keep
        .as_ref()
        .unwrap()
        .iter()
        .map(|&x| x as u32 * 7)
        .collect();
    opts.key_padding_mask = Some(Tensor::from_slice_on(&gpu(), &m32, &[2, 6]).unwrap());
    let got = scaled_dot_product_attention(&q, &k, &v, &opts)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(got, want, "u32 mask differs from f32 mask");
}

#[test]
fn loop_limit_is_chunked_over_dispatches() {
    // D = 64: one key costs 129 loop iterations, so 1000 keys (or queries) per invocation would
    // pass lavapipe's 65,535 and silently stop early; the launcher splits them into chunks.
    assert!(1000 * (2 * 64 + 1) > 65_535 && ak::chunk_len(64) < 1000);
    check_forward(&Case::new(1, 1, 3, 1000, 64, false, true));
    check_backward(&Case::new(1, 1, 1000, 1000, 64, true, false));
    // The block backward walks 8 rows per step (2 D / 4 + 1 iterations unless the driver unrolls
    // the loops over D / 4): at D = 128 past ~8,000 rows, the dQ pass over keys and the dK / dV
    // pass over queries.
    assert!(ak::chunk_len_block(128) < 9000 && 9000 / 8 * (2 * 128 / 4 + 1) > 65_535);
    check_backward(&Case::new(1, 1, 4, 9000, 128, false, true));
    check_backward(&Case::new(1, 1, 9000, 4, 128, false, true));
    // The tiled kernels: a tile of BC rows costs BC / 4 steps of 2 D / 4 + 12 iterations plus
    // its copy; 9000 rows at D = 128 are ~5x the budget in one dispatch, forward, dQ and dK / dV.
    let tiled = AttnConfig::of(AttnVariant::Tiled);
    assert!(ak::chunk_len_tiled(128, tiled.tiles) < 9000);
    let c = Case::new(1, 1, 5, 9000, 128, true, true);
    check_launcher_vs_twin(&c, tiled, 0);
    check_launcher_vs_twin(&Case::new(1, 1, 9000, 5, 128, false, true), tiled, 0);
    // The panel forward walks 16 keys per step within the block rung's chunk length.
    let panel = AttnConfig::of(AttnVariant::Panel);
    check_launcher_vs_twin(&Case::new(1, 1, 5, 9000, 128, true, true), panel, 0);
    // Many small chunks (forced) give the same result as one.
    let c = Case::new(1, 2, 17, 29, 32, true, true);
    let dout = rand_vec(2 * 17 * 32, 5, -1.0, 1.0);
    let run = |cfg: AttnConfig, chunk: usize| run_kernels(&c, cfg, chunk, &dout);
    let one = run(AttnConfig::of(AttnVariant::Row), 0);
    let mut cases: Vec<(AttnConfig, usize)> = vec![
        (AttnConfig::of(AttnVariant::Row), 3),
        (AttnConfig::of(AttnVariant::Block), 0),
        (AttnConfig::of(AttnVariant::Block), 5),
        (AttnConfig::of(AttnVariant::Panel), 0),
        (AttnConfig::of(AttnVariant::Panel), 5),
    ];
    cases.extend(configs()[3..].iter().flat_map(|&t| [(t, 0), (t, 5)]));
    for (cfg, chunk) in cases {
        let many = run(cfg, chunk);
        for n in 0..5 {
            FWD.assert_close(
                &format!(
                    "{} chunk {chunk} vs row in one chunk, output {n}",
                    cfg.name()
                ),
                &many[n],
                &one[n],
            );
        }
    }
}

/// The launchers run directly (forward, then backward from `dout`): [o, lse, dq, dk, dv].
fn run_kernels(c: &Case, cfg: AttnConfig, chunk: usize, dout: &[f32]) -> [Vec<f32>; 5] {
    let s = &c.s;
    let (rows, krows) = (s.batch * s.heads * s.tq, s.batch * s.heads * s.tk);
    let (q, k, v, opts) = c.tensors();
    let g = gpu();
    let keep = opts.key_padding_mask.as_ref();
    let alloc = |n: usize| {
        g.alloc(4 * n.max(1) as u64, "attention test output")
            .unwrap()
    };
    let (o, l) = (alloc(rows * s.d), alloc(rows));
    ak::forward(
        &g,
        s,
        cfg,
        q.operand(),
        k.operand(),
        v.operand(),
        keep.map(Tensor::operand),
        &o,
        &l,
        chunk,
    )
    .unwrap();
    let (dq, dk, dv) = (alloc(rows * s.d), alloc(krows * s.d), alloc(krows * s.d));
    let dout = tensor(dout, &[dout.len()]);
    ak::backward(
        &g,
        s,
        cfg,
        q.operand(),
        k.operand(),
        v.operand(),
        keep.map(Tensor::operand),
        &o,
        &l,
        dout.kernel_view().buf,
        (&dq, &dk, &dv),
        chunk,
    )
    .unwrap();
    [
        read(&o, rows * s.d),
        read(&l, rows),
        read(&dq, rows * s.d),
        read(&dk, krows * s.d),
        read(&dv, krows * s.d),
    ]
}

#[path = "../attention/more.rs"]
mod more;
use more::check_launcher_vs_twin;
