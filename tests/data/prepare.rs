//! Preparing tabular data: statistics from the training rows only, stratified splits, the
//! shipped penguins and titanic files end to end, and serde of the preprocessor and options.

use crate::common::assert_mentions;
use kiln::data::*;

use super::{repo, write_file};

/// Imputation and scaling statistics come from the training rows only.
#[test]
fn statistics_are_fitted_on_the_training_rows_only() {
    // x is large for the first 20 rows and small after, so a training mean is unlikely to match
    // the whole-file mean (checked below for this seed); every 5th x is missing.
    let mut csv = String::from("x,y\n");
    for i in 0..40 {
        let x = if i % 5 == 0 {
            "NA".to_string()
        } else {
            format!("{}", if i < 20 { 100 + i } else { i })
        };
        csv.push_str(&format!("{x},{}\n", i % 2));
    }
    let t = Table::from_csv_str(&csv, "t.csv", HeaderMode::Auto).unwrap();
    let fr = SplitFractions::new(0.5, 0.25).unwrap();
    let labels: Vec<u32> = (0..40).map(|i| i % 2).collect();
    let split = stratified_split(&labels, fr, 9);
    let value = |i: usize| t.rows[i][0].parse::<f64>().ok();
    let present = |rows: &[usize]| rows.iter().filter_map(|&i| value(i)).collect::<Vec<_>>();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let train_vals = present(&split.train);
    let all: Vec<usize> = (0..40).collect();
    let (train_mean, all_mean) = (mean(&train_vals), mean(&present(&all)));
    assert!(
        (train_mean - all_mean).abs() > 1.0,
        "the example must tell them apart"
    );
    for (how, want_fill) in [
        (Impute::Mean, train_mean),
        (Impute::Median, {
            let mut v = train_vals.clone();
            v.sort_by(f64::total_cmp);
            let n = v.len();
            if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            }
        }),
    ] {
        let opts = TabularOptions {
            missing: MissingPolicy::Impute(how),
            ..TabularOptions::new("y")
        };
        let s = prepare_table(t.clone(), &opts, fr, 9).unwrap();
        let ColumnEncoding::Numeric { fill, scaler } = &s.preprocessor.columns()[0].encoding else {
            panic!("numeric x");
        };
        let fill = fill.unwrap();
        assert!(
            (fill - want_fill).abs() < 1e-9,
            "{how:?}: fill {fill} != train {want_fill}"
        );
        // The scaler sees the training values after filling.
        let mut filled = train_vals.clone();
        filled.resize(split.train.len(), fill);
        let m = mean(&filled);
        let sd =
            (filled.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / filled.len() as f64).sqrt();
        let Scaler::Standard { mean: sm, std } = *scaler else {
            panic!("standard")
        };
        assert!(
            (sm - m).abs() < 1e-9 && (std - sd).abs() < 1e-9,
            "scaler {sm} {std} vs {m} {sd}"
        );
        // The training features are standardised: mean 0, std 1 (the val/test rows are not).
        let x: Vec<f64> = s.train.features().iter().map(|&v| v as f64).collect();
        assert!(mean(&x).abs() < 1e-5);
        assert!(
            s.val
                .features()
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>()
                .abs()
                > 1e-3
        );
    }
}

#[test]
fn stratified_split_keeps_class_shares_and_is_reproducible() {
    // 500 / 300 / 200 of three classes, interleaved.
    let labels: Vec<u32> = (0..1000)
        .map(|i| match i % 10 {
            0..=4 => 0,
            5..=7 => 1,
            _ => 2,
        })
        .collect();
    let f = SplitFractions {
        train: 0.6,
        val: 0.25,
        test: 0.15,
    };
    let s = stratified_split(&labels, f, 5);
    let mut all: Vec<usize> = [&s.train[..], &s.val[..], &s.test[..]].concat();
    all.sort();
    assert_eq!(all, (0..1000).collect::<Vec<_>>(), "a partition");
    // Tolerance: each class's count in each part is within 1 of n_c * fraction.
    for (part, frac) in [(&s.train, f.train), (&s.val, f.val), (&s.test, f.test)] {
        for (c, n_c) in [(0u32, 500.0), (1, 300.0), (2, 200.0)] {
            let got = part.iter().filter(|&&i| labels[i] == c).count() as f64;
            assert!(
                (got - n_c * frac).abs() <= 1.0,
                "class {c}: {got} vs {}",
                n_c * frac
            );
        }
    }
    assert_eq!(stratified_split(&labels, f, 5), s);
    assert_ne!(stratified_split(&labels, f, 6), s);
    // Regression split: sizes by rounding, reproducible, a partition.
    let r = shuffled_split(20, f, 1);
    assert_eq!((r.train.len(), r.val.len(), r.test.len()), (12, 5, 3));
    assert_eq!(shuffled_split(20, f, 1), r);
    // Fractions are checked and parsed.
    assert!(SplitFractions::new(0.9, 0.2).is_err());
    assert!("0.8,0.1,0.2".parse::<SplitFractions>().is_err());
    assert_eq!("0.8,0.2".parse::<SplitFractions>().unwrap().test, 0.0);
}

// ---------------------------------------------------------------- real files

#[test]
fn penguins_end_to_end() {
    let path = repo("data/penguins.csv");
    let s = load_tabular(
        &path,
        &TabularOptions::new("species"),
        SplitFractions::default(),
        0,
    )
    .unwrap();
    let names: Vec<String> = ["Adelie", "Chinstrap", "Gentoo"].map(String::from).to_vec();
    assert_eq!(s.class_names.as_ref(), Some(&names));
    assert_eq!(s.dropped_rows, 0);
    assert_eq!(s.train.len() + s.val.len() + s.test.len(), 344);
    assert!((s.train.len() as f64 - 0.7 * 344.0).abs() <= 3.0);
    let feats = s.preprocessor.feature_names();
    assert_eq!(
        feats,
        [
            "island=Biscoe",
            "island=Dream",
            "island=Torgersen",
            "bill_length_mm",
            "bill_depth_mm",
            "flipper_length_mm",
            "body_mass_g",
            "sex=female",
            "sex=male",
            "year",
        ]
    );
    assert_eq!(s.train.feature_shape(), vec![10]);
    assert_eq!(s.train.class_names(), Some(&names[..]));
    assert!(s.train.features().iter().all(|v| v.is_finite()));
    let counts: Vec<usize> = (0..3)
        .map(|c| {
            [&s.train, &s.val, &s.test]
                .iter()
                .map(|d| d.class_counts().unwrap()[c])
                .sum()
        })
        .collect();
    assert_eq!(counts, vec![152, 68, 124]);
    println!("{}", s.report);
    assert!(
        s.report.contains("Adelie (152)") && s.report.contains("missing   11"),
        "{}",
        s.report
    );

    // Dropping rows with missing values: the 11 rows with no sex (2 of them with no measurements).
    let opts = TabularOptions {
        missing: MissingPolicy::DropRows,
        ..TabularOptions::new("species")
    };
    let d = load_tabular(&path, &opts, SplitFractions::default(), 0).unwrap();
    assert_eq!(d.dropped_rows, 11);
    assert_eq!(d.train.len() + d.val.len() + d.test.len(), 333);

    // A numeric target with many values is regression; its missing rows are dropped.
    let r = load_tabular(
        &path,
        &TabularOptions::new("body_mass_g"),
        SplitFractions::default(),
        0,
    )
    .unwrap();
    assert_eq!(r.class_names, None);
    assert_eq!(r.dropped_rows, 2);
    assert!(matches!(
        r.train.targets(),
        Targets::Values { width: 1, .. }
    ));
    assert_eq!(r.train.len() + r.val.len() + r.test.len(), 342);
}

#[test]
fn titanic_end_to_end() {
    let path = repo("data/titanic.csv");
    let opts = TabularOptions::new("survived");
    let s = load_tabular(&path, &opts, SplitFractions::new(0.8, 0.2).unwrap(), 3).unwrap();
    assert_eq!(s.class_names, Some(vec!["died".into(), "survived".into()]));
    assert_eq!(s.train.len() + s.val.len(), 1309);
    assert!(s.test.is_empty());
    assert_eq!(
        s.preprocessor.feature_names(),
        [
            "pclass=1st",
            "pclass=2nd",
            "pclass=3rd",
            "sex=female",
            "sex=male",
            "age",
            "sibsp",
            "parch"
        ]
    );
    println!("{}", s.report);
    assert!(s.report.contains("missing  263"), "{}", s.report);
    // Survival rate is kept by the stratified split (500 of 1309).
    let rate = |d: &InMemoryDataset| d.class_counts().unwrap()[1] as f64 / d.len() as f64;
    assert!((rate(&s.train) - 500.0 / 1309.0).abs() < 0.01);
    // The preprocessor applies to a new file without the target column.
    let new = write_file(
        "titanic",
        "new.csv",
        b"pclass,sex,age,sibsp,parch\n3rd,male,,0,0\n1st,female,40,1,0\n",
    );
    let x = s
        .preprocessor
        .transform(&s.preprocessor.read_csv(&new).unwrap())
        .unwrap();
    assert_eq!(x.len(), 16);
    assert_eq!(&x[..5], &[0.0, 0.0, 1.0, 0.0, 1.0]);
    let d = load_tabular(
        &path,
        &TabularOptions {
            missing: MissingPolicy::DropRows,
            ..opts
        },
        SplitFractions::default(),
        0,
    )
    .unwrap();
    assert_eq!(d.dropped_rows, 263);
}

#[test]
fn preprocessor_and_options_round_trip_through_serde() {
    let s = load_tabular(
        &repo("data/penguins.csv"),
        &TabularOptions::new("species"),
        SplitFractions::default(),
        1,
    )
    .unwrap();
    let pre = &s.preprocessor;
    // TOML parses floats exactly: the round trip is exact.
    let text = toml::to_string(pre).unwrap();
    assert!(text.contains("name = \"island\""), "{text}");
    assert_eq!(&toml::from_str::<Preprocessor>(&text).unwrap(), pre);
    // serde_json without its `float_roundtrip` feature may read a float back 1 ulp off (which
    // can move an f32 output by 1 ulp too), so compare within tolerances.
    let back: Preprocessor = serde_json::from_str(&serde_json::to_string(pre).unwrap()).unwrap();
    assert_eq!(back.feature_names(), pre.feature_names());
    assert_eq!(back.target(), pre.target());
    for (a, b) in back.columns().iter().zip(pre.columns()) {
        let stats = |c: &FeatureColumn| match &c.encoding {
            ColumnEncoding::Numeric {
                fill,
                scaler: Scaler::Standard { mean, std },
            } => {
                vec![fill.unwrap(), *mean, *std]
            }
            ColumnEncoding::OneHot { .. } => vec![],
            e => panic!("unexpected encoding {e:?}"),
        };
        for (x, y) in stats(a).iter().zip(stats(b)) {
            assert!((x - y).abs() <= 1e-12 * y.abs(), "{}: {x} vs {y}", a.name);
        }
        if let ColumnEncoding::OneHot { .. } = a.encoding {
            assert_eq!(a, b);
        }
    }
    let t = pre.read_csv(&repo("data/penguins.csv")).unwrap();
    let (x_back, x) = (back.transform(&t).unwrap(), pre.transform(&t).unwrap());
    assert_eq!(x_back.len(), x.len());
    assert!(
        x_back
            .iter()
            .zip(&x)
            .all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(1.0))
    );
    let exact = toml::from_str::<Preprocessor>(&text).unwrap();
    assert_eq!(exact.transform(&t).unwrap(), x);

    let opts = TabularOptions {
        header: "absent".parse().unwrap(),
        missing: "most-frequent".parse().unwrap(),
        categorical: "label".parse().unwrap(),
        scaling: "min_max".parse().unwrap(),
        task: "Regression".parse().unwrap(),
        target: "t".into(),
    };
    assert_eq!(opts.missing, MissingPolicy::Impute(Impute::MostFrequent));
    let text = toml::to_string(&opts).unwrap();
    assert_mentions(
        &text,
        &["missing = \"most-frequent\"", "scaling = \"min-max\""],
    );
    assert_eq!(toml::from_str::<TabularOptions>(&text).unwrap(), opts);
    assert_eq!(
        toml::from_str::<TabularOptions>("target = \"y\"").unwrap(),
        TabularOptions::new("y")
    );
    let err = "sometimes"
        .parse::<MissingPolicy>()
        .unwrap_err()
        .to_string();
    assert!(err.contains("drop, mean, median, most-frequent"), "{err}");
}
