//! Association rules: Apriori with GPU support counts against the brute-force CPU twin (same
//! itemsets, same counts) on the real Titanic table and on random baskets at awkward sizes, the
//! rule measures on a hand-checked example, the documented handling of odd input (empty
//! transactions, repeated items, thresholds out of range, candidate explosion), and `kiln rules`
//! end to end.

use crate::common::*;
use kiln::data::HeaderMode;
use kiln::data::table::Table;
use kiln::unsupervised::apriori::Truncation;
use kiln::unsupervised::{
    Apriori, RuleOptions, RuleOrder, TableItems, Transactions, association_rules,
};
use kiln_kernels::reference::itemsets as twin;

const TITANIC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/titanic.csv");

fn titanic(opts: &TableItems) -> Transactions {
    let table = Table::read_csv(std::path::Path::new(TITANIC), HeaderMode::Auto).unwrap();
    Transactions::from_table(&table, opts).unwrap()
}

/// GPU Apriori, the CPU twin through the same loop, and the brute-force miner: all equal.
fn all_three_agree(t: &Transactions, a: Apriori, what: &str) -> usize {
    let gpu = a.fit(t).unwrap();
    let cpu = a
        .fit_with(t, |c, len| Ok(twin::support_counts(&t.rows, c, len)))
        .unwrap();
    assert_eq!(gpu, cpu, "{what}: GPU and CPU counts");
    let brute = twin::brute_force(&t.rows, gpu.min_count, gpu.max_len);
    assert_eq!(gpu.to_map(), brute, "{what}: against brute force");
    gpu.sets.len()
}

#[test]
fn titanic_itemsets_equal_the_brute_force_count() {
    // Class, survival, sex, age group (child below 18), siblings and parents as categories.
    let opts = TableItems {
        cuts: vec![("age".into(), vec![18.0])],
        categorical: vec!["sibsp".into(), "parch".into()],
        ..TableItems::default()
    };
    let t = titanic(&opts);
    assert_eq!(t.len(), 1309);
    assert!(t.items.contains(&"age=<18".to_string()) && t.items.contains(&"sex=female".into()));
    let a = Apriori::new(0.01).max_len(6);
    let found = all_three_agree(&t, a, "titanic 1%");
    assert!(found > 100, "{found} itemsets");
    // Equal-frequency bins of every numeric column, a higher threshold.
    let t = titanic(&TableItems::default());
    assert!(
        t.items.iter().any(|i| i.starts_with("age=[")),
        "{:?}",
        t.items
    );
    // sibsp is 0 for 891 of 1,309 passengers: the edges move up to the next distinct values.
    for want in ["sibsp=<1", "sibsp=[1,2)", "sibsp=>=2"] {
        assert!(t.items.iter().any(|i| i == want), "{want}: {:?}", t.items);
    }
    all_three_agree(&t, Apriori::new(0.05), "titanic bins 5%");
    // The exact threshold: 0.05 of 1,309 is 65.45, so 66.
    assert_eq!(Apriori::new(0.05).min_count(1309), 66);
    assert_eq!(Apriori::new(0.5).min_count(4), 2);
    assert_eq!(Apriori::new(1.0).min_count(7), 7);
}

#[test]
fn random_baskets_at_awkward_sizes_equal_the_brute_force_count() {
    for &(n, items, p) in &[(1usize, 1usize, 1.0f32), (33, 5, 0.5), (257, 17, 0.3)] {
        let u = rand_vec(n * items, seed(&format!("b{n}")), 0.0, 1.0);
        let lists: Vec<Vec<String>> = (0..n)
            .map(|r| {
                let mut l: Vec<String> = (0..items)
                    .filter(|&i| u[r * items + i] < p)
                    .map(|i| format!("item{i}"))
                    .collect();
                l.push("always".into());
                l
            })
            .collect();
        let t = Transactions::from_lists(&lists).unwrap();
        for s in [0.02, 0.3, 1.0] {
            all_three_agree(&t, Apriori::new(s), &format!("n={n} support {s}"));
        }
    }
}

#[test]
fn rule_measures_match_a_hand_count() {
    let t = Transactions::from_baskets("bread,milk\nbread,butter,milk\nbeer,bread\nmilk,butter\n")
        .unwrap();
    let sets = Apriori::new(0.5).fit(&t).unwrap();
    // Items: beer 0, bread 1, butter 2, milk 3. Frequent: bread 3, butter 2, milk 3,
    // {bread,milk} 2, {butter,milk} 2.
    let want = [
        (vec![1], 3),
        (vec![2], 2),
        (vec![3], 3),
        (vec![1, 3], 2),
        (vec![2, 3], 2),
    ];
    assert_eq!(sets.to_map(), want.into_iter().collect());
    let opts = RuleOptions {
        min_confidence: 0.0,
        ..RuleOptions::default()
    };
    let r = association_rules(&sets, &opts).unwrap();
    assert_eq!(r.considered, 4);
    // butter => milk: support 2/4, confidence 2/2, lift 1 / (3/4), leverage 1/2 - 1/2 * 3/4.
    let top = &r.rules[0];
    assert_eq!(
        (t.names(&top.antecedent), t.names(&top.consequent)),
        (vec!["butter"], vec!["milk"])
    );
    assert_eq!((top.support, top.confidence), (0.5, 1.0));
    assert!((top.lift - 4.0 / 3.0).abs() < 1e-12 && (top.leverage - 0.125).abs() < 1e-12);
    assert!(top.conviction.is_infinite());
    // milk => bread: confidence 2/3, lift (2/3) / (3/4), conviction (1/4) / (1/3).
    let mb = r
        .rules
        .iter()
        .find(|x| x.antecedent == [3] && x.consequent == [1])
        .unwrap();
    assert!((mb.lift - 8.0 / 9.0).abs() < 1e-12 && (mb.conviction - 0.75).abs() < 1e-12);
    // Filters and other orders.
    let kept = association_rules(
        &sets,
        &RuleOptions {
            min_lift: 1.0,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(kept.rules.len(), 2, "butter <=> milk");
    let by_support = RuleOptions {
        order: RuleOrder::Support,
        ..opts
    };
    let s = association_rules(&sets, &by_support).unwrap();
    assert!(s.rules.windows(2).all(|w| w[0].support >= w[1].support));
}

#[test]
fn odd_baskets_have_documented_behaviour() {
    // Blank lines and comma-only lines are empty transactions: skipped and reported.
    let t = Transactions::from_baskets("a,b\n\n , ,\na, a ,b,,c\nb\n").unwrap();
    assert_eq!(t.len(), 3);
    assert_eq!(t.empty, [2, 3]);
    assert_eq!(t.lines, [1, 4, 5]);
    // A repeated item counts once.
    assert_eq!(t.duplicates, 1);
    assert_eq!(t.rows[1], [0, 1, 2]);
    let sets = Apriori::new(0.6).fit(&t).unwrap();
    assert_eq!(sets.to_map().get(&vec![0u32]), Some(&2));
    // Nothing but empty transactions is an error.
    let e = Transactions::from_baskets("\n ,\n\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("no transaction holds an item"), "{e}");
}

#[test]
fn bad_settings_are_errors() {
    let t = Transactions::from_baskets("a,b\nb,c\n").unwrap();
    let msg = |a: Apriori| a.fit(&t).unwrap_err().to_string();
    assert!(msg(Apriori::new(0.0)).contains("min_support = 0"));
    assert!(msg(Apriori::new(f64::NAN)).contains("min_support = NaN"));
    assert!(msg(Apriori::new(1.5)).contains("at most 1"));
    assert!(msg(Apriori::new(0.5).max_len(0)).contains("max_len = 0"));
    assert!(msg(Apriori::new(0.5).max_len(1000)).contains("1 to 64"));
    assert!(msg(Apriori::new(0.5).max_candidates(0)).contains("max_candidates = 0"));
    // A max_len above the longest transaction is clamped to it.
    assert_eq!(Apriori::new(0.5).max_len(64).fit(&t).unwrap().max_len, 2);
    let sets = Apriori::new(0.5).fit(&t).unwrap();
    let bad = |o: RuleOptions| association_rules(&sets, &o).unwrap_err().to_string();
    let d = RuleOptions::default();
    assert!(
        bad(RuleOptions {
            min_confidence: 1.5,
            ..d
        })
        .contains("min_confidence")
    );
    assert!(
        bad(RuleOptions {
            min_lift: -1.0,
            ..d
        })
        .contains("min_lift")
    );
    assert!(
        bad(RuleOptions {
            max_rules: usize::MAX,
            ..d
        })
        .contains("max_rules")
    );
    assert!("median".parse::<RuleOrder>().is_err());
}

#[test]
fn candidate_explosion_stops_at_the_cap_and_says_so() {
    // 40 identical transactions of 20 items: every subset is frequent (2^20 - 1 itemsets).
    let row: Vec<String> = (0..20).map(|i| format!("i{i:02}")).collect();
    let t = Transactions::from_lists(&vec![row; 40]).unwrap();
    let a = Apriori::new(0.5).max_len(20).max_candidates(1000);
    let f = a.fit(&t).unwrap();
    // Level 3 would have C(20, 3) = 1,140 candidates > 1,000.
    assert_eq!(f.truncated, Some(Truncation { len: 3, cap: 1000 }));
    assert_eq!(f.sets.len(), 20 + 190);
    assert!(f.sets.iter().all(|s| s.count == 40));
    // Rules: 190 pairs give 380 rules; a cap of 100 leaves them out and says so.
    let o = RuleOptions {
        max_rules: 100,
        ..RuleOptions::default()
    };
    let r = association_rules(&f, &o).unwrap();
    assert_eq!((r.truncated, r.rules.len()), (Some(2), 0));
    let r = association_rules(&f, &RuleOptions::default()).unwrap();
    assert_eq!((r.truncated, r.rules.len()), (None, 380));
}

#[test]
fn table_items_bins_cuts_and_errors() {
    let csv =
        "id,age,city,kids\n1,10,Oslo,0\n2,20,Rome,1\n3,30,NA,0\n4,40,Oslo,2\n5,,Rome,0\n6,,NA,\n";
    let table = Table::from_csv_str(csv, "t.csv", HeaderMode::Auto).unwrap();
    let opts = TableItems {
        drop: vec!["id".into()],
        bins: 2,
        categorical: vec!["kids".into()],
        ..TableItems::default()
    };
    let t = Transactions::from_table(&table, &opts).unwrap();
    assert_eq!(
        t.items,
        [
            "age=<30",
            "age=>=30",
            "city=Oslo",
            "city=Rome",
            "kids=0",
            "kids=1",
            "kids=2"
        ]
    );
    // Missing cells give no item: row 3 has no city, row 5 no age.
    assert_eq!(t.names(&t.rows[2]), ["age=>=30", "kids=0"]);
    assert_eq!(t.names(&t.rows[4]), ["city=Rome", "kids=0"]);
    // Row 6 has no item left (id dropped, the rest missing): an empty transaction, skipped.
    assert_eq!((t.len(), t.empty.as_slice(), t.lines[4]), (5, &[7][..], 6));
    let cut = TableItems {
        cuts: vec![("age".into(), vec![15.0, 35.0])],
        ..opts.clone()
    };
    let t = Transactions::from_table(&table, &cut).unwrap();
    assert_eq!(&t.items[..3], ["age=<15", "age=[15,35)", "age=>=35"]);
    let err = |o: TableItems| {
        Transactions::from_table(&table, &o)
            .unwrap_err()
            .to_string()
    };
    assert!(
        err(TableItems {
            bins: 1,
            ..opts.clone()
        })
        .contains("1 bins")
    );
    assert!(
        err(TableItems {
            cuts: vec![("city".into(), vec![1.0])],
            ..opts.clone()
        })
        .contains("holds categories")
    );
    assert!(
        err(TableItems {
            cuts: vec![("id".into(), vec![1.0])],
            ..opts.clone()
        })
        .contains("dropped")
    );
    assert!(
        err(TableItems {
            cuts: vec![("age".into(), vec![3.0, 2.0])],
            ..opts.clone()
        })
        .contains("increasing")
    );
    assert!(
        err(TableItems {
            drop: vec!["nosuch".into()],
            ..opts
        })
        .contains("nosuch")
    );
}
