//! `kiln outliers` end to end on the ODDS-style breast cancer set (357 benign tumours and 21
//! malignant ones as the outliers), against scikit-learn's figures on the same file.

use crate::cli_util::{each_fails, json, kiln, s, scratch_file, scratch_in};

const WBC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/breast_cancer_outliers.csv"
);
const IRIS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/iris.csv");

/// Run `kiln outliers WBC --label diagnosis args... --out DIR`; it must succeed.
fn run_ok(name: &str, args: &[&str]) -> (std::path::PathBuf, serde_json::Value) {
    let dir = scratch_in("outliers", name);
    let mut all = vec!["outliers", WBC, "--label", "diagnosis"];
    all.extend(args);
    all.extend(["--out", s(&dir)]);
    let (ok, out, err) = kiln(&all);
    assert!(ok, "{args:?}: {out}{err}");
    let sm = json(&dir.join("summary.json"));
    (dir, sm)
}

#[test]
fn lof_and_mahalanobis_match_scikit_learn_on_the_same_rows() {
    // scikit-learn 1.9 on StandardScaler'd rows (scripts/outlier-reference.py):
    // LocalOutlierFactor(20): ROC-AUC 0.9497, AP 0.5014;
    // EmpiricalCovariance().mahalanobis: ROC-AUC 0.9257, AP 0.4241.
    for (method, auc, ap) in [("lof", 0.9497, 0.5014), ("mahalanobis", 0.9257, 0.4241)] {
        let (dir, sm) = run_ok(method, &["--method", method, "--contamination", "0.0556"]);
        let got = (
            sm["roc_auc"].as_f64().unwrap(),
            sm["average_precision"].as_f64().unwrap(),
        );
        assert!(
            (got.0 - auc).abs() < 5e-4 && (got.1 - ap).abs() < 5e-4,
            "{method}: {got:?}"
        );
        assert_eq!(sm["positive"], "malignant");
        assert_eq!(sm["known_outliers"], 21);
        assert_eq!(sm["flagged"], 21, "round(0.0556 * 378) rows");
        let text = std::fs::read_to_string(dir.join("scores.csv")).unwrap();
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows[0], "row,score,outlier,diagnosis");
        assert_eq!(rows.len(), 379);
        let mut flagged = 0;
        for (i, l) in rows[1..].iter().enumerate() {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f[0], i.to_string(), "input row order");
            assert!(f[1].parse::<f64>().unwrap().is_finite());
            flagged += f[2].parse::<u32>().unwrap();
        }
        assert_eq!(flagged, 21);
    }
}

#[test]
fn isolation_forest_and_robust_z_score_the_malignant_rows_high() {
    // scikit-learn's IsolationForest, seeds 0-4: ROC-AUC 0.942-0.959 (mean 0.952).
    let (_, sm) = run_ok("iforest", &["--method", "iforest"]);
    let auc = sm["roc_auc"].as_f64().unwrap();
    assert!(auc > 0.93, "{auc}");
    assert_eq!(sm["settings"]["trees"], 100);
    assert_eq!(sm["settings"]["max_samples"], 256);
    assert_eq!(
        sm["flagged"], 38,
        "round(0.1 * 378) rows at the default contamination"
    );
    let (_, sm) = run_ok(
        "robust-z",
        &["--method", "robust-z", "--positive", "malignant"],
    );
    assert!(sm["roc_auc"].as_f64().unwrap() > 0.9, "{sm}");
}

/// `kiln outliers DATA flags... --out OUT` must fail, cleanly, with `want` in its message.
fn fails(data: &str, flags: &[&str], want: &str, out: &str) {
    let args = [&["outliers", data], flags].concat();
    each_fails(&[(&args, want)], &["--out", out]);
}

#[test]
fn bad_flags_and_data_are_clean_errors() {
    let (dir, one) = scratch_file("outliers", "bad", "one.csv", "a,b\n1,2\n");
    let out = s(&dir);
    fails(WBC, &["--method", "svm"], "--method svm", out);
    fails(WBC, &["--contamination", "0.7"], "(0, 0.5]", out);
    fails(WBC, &["--contamination", "0"], "(0, 0.5]", out);
    fails(WBC, &["--method", "lof", "--k", "378"], "k = 378", out);
    fails(IRIS, &["--label", "species"], "--positive", out);
    let rose = ["--label", "species", "--positive", "rose"];
    fails(IRIS, &rose, "--positive rose", out);
    fails(s(&one), &[], "1 row", out);
    let bad_hidden = ["--method", "autoencoder", "--hidden", "8,x"];
    fails(WBC, &bad_hidden, "--hidden 8,x", out);
}
