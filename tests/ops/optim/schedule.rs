//! Learning-rate schedules against their formulas; names, defaults, serde and validation.

use super::*;
use kiln::optim::ScheduleKind;

#[track_caller]
fn close(what: &str, got: f32, want: f64) {
    Tolerance::new(1e-6, 1e-9, "f64 formula rounded to f32").assert_close(what, &[got], &[want]);
}

#[test]
fn schedules_follow_their_formulas() {
    let base = 0.1f32;
    let b = base as f64;
    let pi = std::f64::consts::PI;
    for t in [0u64, 1, 10, 1000] {
        close("constant", Schedule::Constant.lr_at(base, t), b);
    }
    let s = Schedule::Step {
        step_size: 7,
        gamma: 0.5,
    };
    for (t, k) in [(0u64, 0), (6, 0), (7, 1), (13, 1), (14, 2), (71, 10)] {
        close(&format!("step t={t}"), s.lr_at(base, t), b * 0.5f64.powi(k));
    }
    let s = Schedule::Exponential { gamma: 0.97 };
    for t in [0u64, 1, 17, 129] {
        close(
            &format!("exponential t={t}"),
            s.lr_at(base, t),
            b * (0.97f32 as f64).powi(t as i32),
        );
    }
    let min = 0.001f32;
    let s = Schedule::Cosine {
        total_steps: 129,
        min_lr: min,
    };
    let cos = |t: f64, tt: f64| min as f64 + (b - min as f64) * (1.0 + (pi * t / tt).cos()) / 2.0;
    for t in [0u64, 1, 64, 100, 128, 129] {
        close(
            &format!("cosine t={t}"),
            s.lr_at(base, t),
            cos(t as f64, 129.0),
        );
    }
    close("cosine after the end", s.lr_at(base, 500), min as f64);

    let s = Schedule::WarmupCosine {
        warmup_steps: 10,
        total_steps: 110,
        min_lr: min,
    };
    for t in 0..10u64 {
        close(
            &format!("warm-up t={t}"),
            s.lr_at(base, t),
            b * (t + 1) as f64 / 10.0,
        );
    }
    close("warm-up end", s.lr_at(base, 9), b);
    for t in [10u64, 11, 60, 109, 110] {
        close(
            &format!("warmup-cosine t={t}"),
            s.lr_at(base, t),
            cos((t - 10) as f64, 100.0),
        );
    }
    close(
        "warmup-cosine after the end",
        s.lr_at(base, 111),
        min as f64,
    );

    // OneCycleLR(max_lr=0.5, total_steps=100, pct_start=0.3, div_factor=25, final_div_factor=1e4).
    let s = Schedule::OneCycle {
        total_steps: 100,
        max_lr: Some(0.5),
        pct_start: 0.3,
        div_factor: 25.0,
        final_div_factor: 1e4,
    };
    let (max, init) = (0.5f64, 0.5 / 25.0);
    let fin = init / 1e4;
    let peak = 0.3f32 as f64 * 100.0 - 1.0;
    let ann = |a: f64, z: f64, pct: f64| z + (a - z) / 2.0 * ((pi * pct).cos() + 1.0);
    close("one-cycle start", s.lr_at(123.0, 0), init);
    for t in [1u64, 10, 28] {
        close(
            &format!("one-cycle up t={t}"),
            s.lr_at(base, t),
            ann(init, max, t as f64 / peak),
        );
    }
    close("one-cycle peak", s.lr_at(base, 29), max);
    for t in [30u64, 50, 98] {
        let pct = (t as f64 - peak) / (99.0 - peak);
        close(
            &format!("one-cycle down t={t}"),
            s.lr_at(base, t),
            ann(max, fin, pct),
        );
    }
    close("one-cycle end", s.lr_at(base, 99), fin);
    close("one-cycle after the end", s.lr_at(base, 150), fin);
    // max_lr None peaks at the base rate.
    let s = ScheduleKind::OneCycle.with_total_steps(100);
    close("one-cycle default peak", s.lr_at(base, 29), b);
}

#[test]
fn schedule_names_defaults_serde_and_errors() {
    for kind in ScheduleKind::ALL {
        let s = Schedule::from_name(kind.name(), 1000).unwrap();
        assert_eq!(s.kind(), kind);
        s.validate().unwrap();
        assert_eq!(kind.to_string().parse::<ScheduleKind>().unwrap(), kind);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(kind.name()), "{json}");
        assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), s);
        // Defaults never exceed the base rate (one-cycle and warm-up start below it).
        for t in [0u64, 1, 50, 333, 500, 999, 1000, 5000] {
            let lr = s.lr_at(0.1, t);
            assert!(
                lr.is_finite() && (0.0..=0.1 + 1e-7).contains(&lr),
                "{kind} t={t}: {lr}"
            );
        }
    }
    assert_eq!(
        Schedule::from_name("step", 300).unwrap(),
        Schedule::Step {
            step_size: 100,
            gamma: 0.1
        }
    );
    let e = Schedule::from_name("exponential", 200).unwrap();
    // gamma is an f32: its rounding (~6e-8) compounds over 200 steps.
    let lr = e.lr_at(1.0, 200);
    assert!(
        (lr - 0.01).abs() < 1e-6,
        "exponential default reaches 1% at T, got {lr}"
    );
    assert_eq!(
        Schedule::from_name("warmup-cosine", 1000).unwrap(),
        Schedule::WarmupCosine {
            warmup_steps: 50,
            total_steps: 1000,
            min_lr: 0.0
        }
    );
    let toml_src = "kind = \"warmup-cosine\"\nwarmup_steps = 5\ntotal_steps = 50\nmin_lr = 0.0\n";
    assert_eq!(
        toml::from_str::<Schedule>(toml_src).unwrap(),
        Schedule::WarmupCosine {
            warmup_steps: 5,
            total_steps: 50,
            min_lr: 0.0
        }
    );
    assert_err_contains(
        Schedule::from_name("linear", 10),
        &["linear", "warmup-cosine"],
    );
    let bad = [
        (
            Schedule::Step {
                step_size: 0,
                gamma: 0.1,
            },
            "step_size",
        ),
        (Schedule::Exponential { gamma: -1.0 }, "gamma"),
        (
            Schedule::Cosine {
                total_steps: 0,
                min_lr: 0.0,
            },
            "total_steps",
        ),
        (
            Schedule::WarmupCosine {
                warmup_steps: 20,
                total_steps: 10,
                min_lr: 0.0,
            },
            "warmup_steps",
        ),
        (
            Schedule::OneCycle {
                total_steps: 10,
                max_lr: None,
                pct_start: 1.5,
                div_factor: 25.0,
                final_div_factor: 1e4,
            },
            "pct_start",
        ),
    ];
    for (s, field) in bad {
        assert_err_contains(s.validate(), &[field]);
    }
}
