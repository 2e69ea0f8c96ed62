//! `kiln rules` end to end: the Titanic table and a basket file, the files it writes, `--verify`
//! against the brute-force twin, the candidate cap's warning, and bad flags and data as clean
//! errors.

use crate::cli_util::{each_fails, json, kiln, s, scratch_file, scratch_in};
use kiln::data::HeaderMode;
use kiln::data::table::Table;

const TITANIC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/titanic.csv");

/// Run `kiln args... --out DIR` in a fresh scratch folder; it must succeed: (dir, stdout, stderr).
fn run_ok(name: &str, args: &[&str]) -> (std::path::PathBuf, String, String) {
    let dir = scratch_in("rules", name);
    let mut all = args.to_vec();
    all.extend(["--out", s(&dir)]);
    let (ok, out, err) = kiln(&all);
    assert!(ok, "{args:?}: {out}{err}");
    (dir, out, err)
}

fn csv(path: &std::path::Path) -> Table {
    Table::read_csv(path, HeaderMode::Present).unwrap()
}

#[test]
fn titanic_rules_are_written_sorted_and_verified() {
    let (dir, out, _) = run_ok(
        "titanic",
        &[
            "rules",
            TITANIC,
            "--cut",
            "age=18",
            "--drop",
            "sibsp",
            "--drop",
            "parch",
            "--min-support",
            "0.05",
            "--min-confidence",
            "0.7",
            "--verify",
        ],
    );
    assert!(
        out.contains("verified: equal to the brute-force CPU count"),
        "{out}"
    );
    assert!(out.contains("1309 transactions"), "{out}");
    let sets = csv(&dir.join("itemsets.csv"));
    assert_eq!(sets.columns, ["items", "count", "support"]);
    // Singletons from the table: 843 men, 500 survivors.
    let count = |items: &str| {
        let r = sets.rows.iter().find(|r| r[0] == items).unwrap();
        r[1].parse::<u32>().unwrap()
    };
    assert_eq!(count("{sex=male}"), 843);
    assert_eq!(count("{survived=survived}"), 500);
    let rules = csv(&dir.join("rules.csv"));
    assert_eq!(
        rules.columns,
        [
            "antecedent",
            "consequent",
            "support",
            "confidence",
            "lift",
            "leverage",
            "conviction"
        ]
    );
    let lifts: Vec<f64> = rules.rows.iter().map(|r| r[4].parse().unwrap()).collect();
    assert!(
        !lifts.is_empty() && lifts.windows(2).all(|w| w[0] >= w[1]),
        "{lifts:?}"
    );
    assert!(
        rules
            .rows
            .iter()
            .all(|r| r[3].parse::<f64>().unwrap() >= 0.7)
    );
    let sm = json(&dir.join("summary.json"));
    assert_eq!(sm["transactions"], 1309);
    assert_eq!(sm["min_count"], 66);
    assert_eq!(sm["rules"].as_u64().unwrap() as usize, rules.len());
    assert!(out.contains("=>"), "the top rules are printed: {out}");
}

#[test]
fn baskets_with_odd_lines_and_the_candidate_cap() {
    let dir = scratch_in("rules", "baskets");
    let file = dir.join("shop.txt");
    std::fs::write(
        &file,
        "bread, milk\n\nbread,butter,milk,milk\n,\nbeer,bread\nmilk,butter\n",
    )
    .unwrap();
    let (out_dir, out, err) = run_ok("baskets-out", &["rules", s(&file), "--min-support", "0.5"]);
    assert!(
        err.contains("2 empty transactions skipped") && err.contains("1 with a repeated"),
        "{err}"
    );
    assert!(out.contains("4 transactions"), "{out}");
    let rules = csv(&out_dir.join("rules.csv"));
    assert_eq!(rules.rows[0][..2], ["{butter}", "{milk}"]);
    assert_eq!(rules.rows[0][6], "inf");
    // Identical long baskets: level 3 has 1,140 candidates, above a cap of 1,000.
    let long = dir.join("long.txt");
    let row: Vec<String> = (0..20).map(|i| format!("i{i}")).collect();
    std::fs::write(&long, format!("{}\n", row.join(",")).repeat(30)).unwrap();
    let (cap_dir, _, err) = run_ok(
        "cap",
        &[
            "rules",
            s(&long),
            "--max-len",
            "20",
            "--max-candidates",
            "1000",
            "--max-rules",
            "10",
        ],
    );
    assert!(
        err.contains("more than 1000 candidates") && err.contains("up to 2 items"),
        "{err}"
    );
    assert!(err.contains("--max-rules 10"), "{err}");
    let sm = json(&cap_dir.join("summary.json"));
    assert_eq!(
        (sm["truncated_at_len"].as_u64(), sm["itemsets"].as_u64()),
        (Some(3), Some(210))
    );
}

#[test]
fn bad_flags_and_data_are_clean_errors() {
    let (dir, blank) = scratch_file("rules", "bad", "blank.txt", "\n , \n\n");
    let cases: &[(&[&str], &str)] = &[
        (&["rules", TITANIC, "--min-support", "0"], "--min-support 0"),
        (&["rules", TITANIC, "--min-support", "1.5"], "at most 1"),
        (&["rules", TITANIC, "--max-len", "0"], "--max-len 0"),
        (&["rules", TITANIC, "--max-len", "1000"], "1 to 64"),
        (
            &["rules", TITANIC, "--max-candidates", "0"],
            "--max-candidates 0",
        ),
        (
            &["rules", TITANIC, "--min-confidence", "2"],
            "--min-confidence 2",
        ),
        (&["rules", TITANIC, "--sort", "median"], "--sort median"),
        (&["rules", TITANIC, "--format", "xml"], "--format xml"),
        (&["rules", TITANIC, "--bins", "0"], "0 bins"),
        (&["rules", TITANIC, "--cut", "age"], "--cut age"),
        (&["rules", TITANIC, "--cut", "sex=1"], "holds categories"),
        (&["rules", TITANIC, "--drop", "nosuch"], "nosuch"),
        (&["rules", s(&blank)], "no transaction holds an item"),
        (&["rules", s(&blank), "--drop", "a"], "apply to tables"),
        (
            &["rules", "/nonexistent/baskets.txt"],
            "/nonexistent/baskets.txt",
        ),
    ];
    each_fails(cases, &["--out", s(&dir)]);
}
