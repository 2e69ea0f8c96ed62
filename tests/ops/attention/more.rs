//! Attention op tests, continued: views, large heads, shape errors, memory, and the tiled
//! launchers' gradients against the composed op's autograd.

use super::*;
use kiln_kernels::launch::attention::{AttnConfig, AttnVariant};

#[test]
fn views_and_large_head_sizes() {
    // q, k, v as (B, T, H, D) transposed to (B, H, T, D): non-contiguous views, as a
    // multi-head layer makes them.
    let c = Case::new(2, 3, 7, 7, 16, true, false);
    let (q, k, v, opts) = c.tensors();
    let want = scaled_dot_product_attention(&q, &k, &v, &opts)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let view = |t: &Tensor| {
        t.transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .transpose(1, 2)
            .unwrap()
    };
    let (qv, kv, vv) = (view(&q), view(&k), view(&v));
    assert!(!qv.is_contiguous());
    let got = scaled_dot_product_attention(&qv, &kv, &vv, &opts).unwrap();
    FWD.assert_close("views", &got.to_vec::<f32>().unwrap(), &want);
    got.sum().unwrap().backward().unwrap();
    assert_eq!(q.grad().unwrap().shape(), [2, 3, 7, 16]);
    // D above the kernels' MAX_D goes through the composition.
    check_forward(&Case::new(1, 1, 5, 6, 130, true, true));
}

#[test]
fn shape_errors_name_the_shapes() {
    let t = |s: &[usize]| Tensor::zeros_on(&gpu(), s).unwrap();
    let q = t(&[2, 3, 4, 8]);
    // (K, V, key mask) shapes against Q (2, 3, 4, 8): the error names the one that disagrees.
    type Shapes<'a> = (&'a [usize], &'a [usize], Option<&'a [usize]>);
    let cases: &[Shapes] = &[
        (&[1, 3, 5, 8], &[1, 3, 5, 8], None),
        (&[2, 2, 5, 8], &[2, 2, 5, 8], None),
        (&[2, 3, 5, 4], &[2, 3, 5, 4], None),
        (&[2, 3, 5, 8], &[2, 3, 6, 8], None),
        (&[2, 3, 5], &[2, 3, 5], None),
        (&[2, 3, 5, 8], &[2, 3, 5, 8], Some(&[2, 4])),
    ];
    for &(ks, vs, mask) in cases {
        let needle = format!("{:?}", mask.unwrap_or(if ks == vs { ks } else { vs }));
        let (k, v) = (t(ks), t(vs));
        let opts = AttentionOptions {
            key_padding_mask: mask.map(t),
            ..Default::default()
        };
        for composed in [false, true] {
            let r = if composed {
                attention_composed(&q, &k, &v, &opts)
            } else {
                scaled_dot_product_attention(&q, &k, &v, &opts)
            };
            let e = r.expect_err("bad shapes must fail").to_string();
            assert!(e.contains(&needle), "error {e:?} should name {needle}");
        }
    }
}

/// Peak device bytes above the inputs of one forward + backward at sequence length `t`.
fn peak_bytes(fused: bool, t: usize) -> u64 {
    let g = private_gpu();
    let mk = |s: u64| {
        Tensor::from_slice_on(&g, &rand_vec(2 * t * 16, s, -1.0, 1.0), &[1, 2, t, 16])
            .unwrap()
            .requires_grad()
    };
    let (q, k, v) = (mk(1), mk(2), mk(3));
    g.sync().unwrap();
    let base = g.live_bytes();
    g.reset_peak();
    let opts = AttentionOptions {
        causal: true,
        ..Default::default()
    };
    let o = if fused {
        scaled_dot_product_attention(&q, &k, &v, &opts)
    } else {
        attention_composed(&q, &k, &v, &opts)
    };
    o.unwrap().sum().unwrap().backward().unwrap();
    g.sync().unwrap();
    g.peak_bytes() - base
}

#[test]
fn memory_grows_linearly_in_t() {
    let (f1, f2) = (peak_bytes(true, 256), peak_bytes(true, 512));
    let (c1, c2) = (peak_bytes(false, 256), peak_bytes(false, 512));
    let (rf, rc) = (f2 as f64 / f1 as f64, c2 as f64 / c1 as f64);
    assert!(
        rf < 2.5,
        "fused peak grew {rf:.2}x from T 256 to 512 ({f1} -> {f2} bytes)"
    );
    assert!(
        rc > 3.0,
        "composed peak grew only {rc:.2}x ({c1} -> {c2} bytes)"
    );
    assert!(
        f2 * 4 < c2,
        "fused {f2} bytes should be far below composed {c2} at T 512"
    );
}

#[test]
fn tiled_op_gradients_match_composed() {
    // The op with the tiled rung forced through the tuner's cache is covered by the launcher
    // tests; here the tiled launchers' gradients of sum(O * w) against the composed op's autograd.
    for &(tq, tk, d, causal, mask) in &[
        (7, 7, 16, true, true),
        (129, 129, 32, true, false),
        (257, 257, 32, false, true),
    ] {
        let c = Case::new(2, 2, tq, tk, d, causal, mask);
        let w = loss_weights(&c);
        let (o, composed) = op_grads(&c, true, &w);
        let got = run_kernels(&c, AttnConfig::of(AttnVariant::Tiled), 0, Some(&w));
        FWD.assert_close(
            &format!("O tiled vs composed {}", c.name()),
            &got[0],
            &f64s(&o),
        );
        for n in 0..3 {
            GRAD.assert_close(
                &format!("{} tiled vs composed {}", ["dq", "dk", "dv"][n], c.name()),
                &got[n + 2],
                &f64s(&composed[n]),
            );
        }
    }
}
