//! Reading CSV files: missing markers, stray text, ragged rows, headers, encodings.

use crate::common::assert_mentions;
use kiln::data::*;

use super::{prepare, table, write_file};

#[test]
fn every_missing_marker_is_missing() {
    let t = table(
        "x,c,y\n1,a,0\n,NA,1\nNA,b,0\nN/A,?,1\nNaN,a,0\nnan,,1\n?,a,0\n3, b ,1\n",
        HeaderMode::Auto,
    );
    assert!(t.header_present);
    assert_eq!(t.missing_count(0), 6);
    assert_eq!(t.missing_count(1), 3);
    assert_eq!(t.infer_kind(0).unwrap(), ColumnKind::Numeric);
    assert_eq!(t.infer_kind(1).unwrap(), ColumnKind::Categorical);
    assert_eq!(t.rows[7][1], "b", "fields are trimmed");
    // Imputed with the mean of 1 and 3 (all rows here are training rows).
    let opts = TabularOptions {
        scaling: Scaling::None,
        ..TabularOptions::new("y")
    };
    let pre = Preprocessor::fit(
        &t,
        &[
            ColumnKind::Numeric,
            ColumnKind::Categorical,
            ColumnKind::Numeric,
        ],
        TargetEncoding::Regression { column: "y".into() },
        &opts,
    )
    .unwrap();
    let x = pre.transform(&t).unwrap();
    assert_eq!(pre.feature_names(), vec!["x", "c=a", "c=b"]);
    let col0: Vec<f32> = x.chunks(3).map(|r| r[0]).collect();
    assert_eq!(col0, vec![1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 3.0]);
    // c: a appears 3 times, b twice -> missing c becomes a.
    assert_eq!(&x[3..6], &[2.0, 1.0, 0.0]);
}

#[test]
fn stray_text_in_a_numeric_column_names_line_and_column() {
    let mut csv = String::from("species,bill_length_mm\n");
    for i in 0..20 {
        let v = if i == 15 {
            "abc".to_string()
        } else {
            format!("{}.5", 30 + i)
        };
        csv.push_str(&format!("{},{v}\n", if i % 2 == 0 { "A" } else { "B" }));
    }
    let path = write_file("stray", "penguins.csv", csv.as_bytes());
    let err = load_tabular(
        &path,
        &TabularOptions::new("species"),
        SplitFractions::default(),
        0,
    )
    .unwrap_err();
    let msg = err.to_string();
    // Line 17: the header is line 1 and the 16th data row (i = 15) is line 17.
    let want = "penguins.csv line 17, column bill_length_mm: expected a number, found \"abc\"";
    assert!(msg.contains(want), "{msg}");
    assert!(
        matches!(err, DataError::Value { line: 17, ref column, ref value, .. } if column == "bill_length_mm" && value == "abc")
    );
    // A column mostly of text is categorical instead.
    let t = table("a,b\nx,1\ny,2\nz,w\n", HeaderMode::Present);
    assert_eq!(t.infer_kind(1).unwrap(), ColumnKind::Categorical);
}

#[test]
fn ragged_rows_are_reported_with_their_lines() {
    let err = Table::from_csv_str(
        "a,b,c\n1,2,3\n4,5\n6,7,8\n9,10,11,12\n",
        "r.csv",
        HeaderMode::Auto,
    )
    .unwrap_err();
    match &err {
        DataError::Ragged {
            expected,
            rows,
            count,
            ..
        } => {
            assert_eq!((*expected, *count), (3, 2));
            assert_eq!(rows, &vec![(3, 2), (5, 4)]);
        }
        e => panic!("expected Ragged, got {e:?}"),
    }
    let msg = err.to_string();
    assert_mentions(&msg, &["r.csv", "line 3 has 2", "line 5 has 4"]);
    // Quoted fields with commas are one field; blank lines are skipped and lines still counted.
    let t = table("name,v\n\"a, b\",1\n\nc,2\n", HeaderMode::Auto);
    assert_eq!(t.rows, vec![vec!["a, b", "1"], vec!["c", "2"]]);
    assert_eq!(t.lines, vec![2, 4]);
    let t = table("\r\na,b\r\n1,x\r\n\r\n \r\n2,y\r\n", HeaderMode::Auto);
    assert_eq!(
        (t.columns.clone(), t.lines),
        (vec!["a".into(), "b".into()], vec![3, 6])
    );
}

#[test]
fn header_absent_and_auto_detection_both_ways() {
    // No header: numeric rows only.
    let t = table("1,2,0\n3,4,1\n5,6,0\n", HeaderMode::Auto);
    assert!(!t.header_present);
    assert_eq!(t.columns, vec!["column1", "column2", "column3"]);
    assert_eq!(t.len(), 3);
    assert_eq!(t.lines, vec![1, 2, 3]);
    // A header over numbers.
    let t = table("a,b,label\n1,2,x\n3,4,y\n", HeaderMode::Auto);
    assert!(t.header_present);
    assert_eq!(t.columns, vec!["a", "b", "label"]);
    // Text over text: a header when its names never recur below...
    let t = table(
        "colour,size\nred,small\nblue,large\nred,large\n",
        HeaderMode::Auto,
    );
    assert!(t.header_present);
    // ...and data when the first row's values come again.
    let t = table("red,small\nblue,large\nred,large\n", HeaderMode::Auto);
    assert!(!t.header_present);
    // Forced modes override the rule.
    assert!(!table("a,b\n1,2\n", HeaderMode::Absent).header_present);
    assert!(table("1,2\n3,4\n", HeaderMode::Present).header_present);
    // Headerless end to end: target named by position.
    let s = prepare(
        "1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,1,0\n2,3,1\n",
        &TabularOptions::new("column3"),
    )
    .unwrap();
    assert_eq!(s.class_names, Some(vec!["0".into(), "1".into()]));
    assert_eq!(s.preprocessor.feature_names(), vec!["column1", "column2"]);
    // Headerless with the target in the middle: a new file without the target column is read
    // by position (column1, column3 of the training file).
    let s = prepare(
        "1,a,10\n2,b,20\n3,a,30\n4,b,40\n5,a,50\n6,b,60\n",
        &TabularOptions {
            scaling: Scaling::None,
            ..TabularOptions::new("column2")
        },
    )
    .unwrap();
    let new = Table::from_csv_str("7,70\n8,80\n", "new.csv", HeaderMode::Absent).unwrap();
    assert_eq!(
        s.preprocessor.transform(&new).unwrap(),
        vec![7.0, 70.0, 8.0, 80.0]
    );
}

#[test]
fn unknown_target_lists_the_columns() {
    let err = prepare("a,b,c\n1,2,3\n4,5,6\n", &TabularOptions::new("d")).unwrap_err();
    assert!(
        matches!(&err, DataError::UnknownColumn { available, .. } if available == &["a", "b", "c"])
    );
    let msg = err.to_string();
    assert_mentions(&msg, &["\"d\"", "the columns are: a, b, c"]);
}

#[test]
fn constant_column_scales_to_zero_without_nan() {
    let mut csv = String::from("k,x,y\n");
    for i in 0..30 {
        csv.push_str(&format!("5,{},{}\n", i, i % 2));
    }
    for scaling in [Scaling::Standard, Scaling::MinMax] {
        let s = prepare(
            &csv,
            &TabularOptions {
                scaling,
                ..TabularOptions::new("y")
            },
        )
        .unwrap();
        let x = s.train.features();
        assert!(x.iter().all(|v| v.is_finite()));
        assert!(x.chunks(2).all(|r| r[0] == 0.0), "{scaling}: constant -> 0");
        assert!(s.report.contains("constant"), "{}", s.report);
    }
}

#[test]
fn one_hot_and_label_encoding() {
    let csv = "colour,n,y\nred,1,a\nblue,2,b\ngreen,3,a\nred,4,b\n";
    let t = table(csv, HeaderMode::Auto);
    let kinds = [
        ColumnKind::Categorical,
        ColumnKind::Numeric,
        ColumnKind::Categorical,
    ];
    let target = || TargetEncoding::Classification {
        column: "y".into(),
        classes: vec!["a".into(), "b".into()],
        numeric: false,
    };
    let opts = |categorical| TabularOptions {
        categorical,
        scaling: Scaling::None,
        ..TabularOptions::new("y")
    };
    let one = Preprocessor::fit(&t, &kinds, target(), &opts(CategoricalEncoding::OneHot)).unwrap();
    assert_eq!(
        one.feature_names(),
        vec!["colour=blue", "colour=green", "colour=red", "n"]
    );
    assert_eq!(
        one.transform(&t).unwrap(),
        vec![
            0., 0., 1., 1., 1., 0., 0., 2., 0., 1., 0., 3., 0., 0., 1., 4.
        ]
    );
    let lab = Preprocessor::fit(&t, &kinds, target(), &opts(CategoricalEncoding::Label)).unwrap();
    assert_eq!(lab.feature_names(), vec!["colour", "n"]);
    assert_eq!(
        lab.transform(&t).unwrap(),
        vec![2., 1., 0., 2., 1., 3., 2., 4.]
    );
    assert_eq!(
        lab.targets(&t).unwrap(),
        Targets::Classes {
            labels: vec![0, 1, 0, 1],
            num_classes: 2
        }
    );

    // Unseen category at transform time: all zeros for one-hot, an error for label codes.
    let new =
        Table::from_csv_str("colour,n\nred,1\npurple,2\n", "new.csv", HeaderMode::Auto).unwrap();
    assert_eq!(
        one.transform(&new).unwrap(),
        vec![0., 0., 1., 1., 0., 0., 0., 2.]
    );
    let err = lab.transform(&new).unwrap_err();
    assert!(
        matches!(&err, DataError::Value { line: 3, column, value, .. } if column == "colour" && value == "purple"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("new.csv line 3, column colour: category \"purple\""),
        "{err}"
    );
    // Stray text at transform time is an error too.
    let bad = Table::from_csv_str("colour,n\nred,x\n", "new.csv", HeaderMode::Present).unwrap();
    assert!(
        one.transform(&bad)
            .unwrap_err()
            .to_string()
            .contains("line 2, column n: expected a number")
    );
}
