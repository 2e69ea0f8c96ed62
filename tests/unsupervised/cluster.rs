//! Clustering: the `cluster.wgsl` kernels against their CPU twin at awkward sizes, Lloyd on the
//! GPU against the CPU twin from the same centroids, DBSCAN, PCA and the scores, and bad input.

use crate::common;

use common::*;
use kiln::unsupervised::metrics::{adjusted_rand_index, nmi, silhouette};
use kiln::unsupervised::{Dbscan, KMeans, Pca, Points, kmeans};
use kiln_kernels::launch::cluster as ck;
use kiln_kernels::reference::cluster as twin;

/// Squared distances, assignments and norms: f32 GEMM expansion against direct f64.
const DIST: Tolerance = Tolerance::new(1e-4, 1e-3, "f32 GEMM expansion of squared distances");
/// Inertia: a sum of n squared distances, GEMM route against the direct route.
const INERTIA: Tolerance = Tolerance::new(1e-4, 1e-3, "sum of f32 squared distances");

/// Points in well separated random blobs so that nearest centroids are never near-ties.
fn blobs(n: usize, d: usize, centres: usize, tag: &str) -> Vec<f32> {
    let c = rand_vec(centres * d, seed(&format!("{tag}c")), -20.0, 20.0);
    let noise = rand_vec(n * d, seed(&format!("{tag}n")), -1.0, 1.0);
    (0..n * d)
        .map(|i| c[(i / d % centres) * d + i % d] + noise[i])
        .collect()
}

#[test]
fn assign_kernel_matches_cpu_on_a_given_cross_term() {
    // The kernel alone: G = X C^T computed on the host, uploaded.
    let g = gpu();
    for &(n, k, d) in &[
        (1usize, 1usize, 1usize),
        (7, 3, 5),
        (257, 17, 3),
        (129, 129, 2),
    ] {
        let x = rand_vec(n * d, seed(&format!("ax{n}")), -3.0, 3.0);
        let c = rand_vec(k * d, seed(&format!("ac{k}")), -3.0, 3.0);
        let cross: Vec<f32> = (0..n * k)
            .map(|i| (0..d).map(|j| x[i / k * d + j] * c[i % k * d + j]).sum())
            .collect();
        let up = |v: &[f32]| tensor(v, &[v.len()]);
        let (gt, xn, cn) = (
            up(&cross),
            up(&twin::sq_norms(&x, d)
                .iter()
                .map(|&v| v as f32)
                .collect::<Vec<_>>()),
            up(&twin::sq_norms(&c, d)
                .iter()
                .map(|&v| v as f32)
                .collect::<Vec<_>>()),
        );
        let label = g.alloc(4 * n as u64, "label").unwrap();
        let dist = g.alloc(4 * n as u64, "dist").unwrap();
        ck::assign(
            &g,
            gt.operand().buf,
            xn.operand().buf,
            cn.operand().buf,
            n,
            k,
            &label,
            &dist,
        )
        .unwrap();
        let got_l: Vec<u32> =
            bytemuck::cast_slice(&g.read(&label, 0, 4 * n as u64).unwrap()).to_vec();
        let got_d: Vec<f32> =
            bytemuck::cast_slice(&g.read(&dist, 0, 4 * n as u64).unwrap()).to_vec();
        let (want_l, want_d) = twin::assign(&x, &c, d);
        DIST.assert_close(&format!("assign dist n={n} k={k}"), &got_d, &want_d);
        // Labels may differ only where two centroids are within tolerance of each other.
        let all = twin::sq_dists(&x, &c, d);
        for i in 0..n {
            let (a, b) = (
                all[i * k + got_l[i] as usize],
                all[i * k + want_l[i] as usize],
            );
            assert!(
                DIST.close(a, b),
                "row {i}: label {} vs {} ({a} vs {b})",
                got_l[i],
                want_l[i]
            );
        }
    }
}

#[test]
fn distance_norm_count_and_sum_kernels_match_cpu() {
    for &(n, m, d) in &[
        (1usize, 1usize, 1usize),
        (7, 17, 3),
        (257, 5, 8),
        (300, 129, 1),
        (2500, 7, 3),
    ] {
        let x = rand_vec(n * d, seed(&format!("dx{n}{d}")), -2.0, 2.0);
        let y = rand_vec(m * d, seed(&format!("dy{m}{d}")), -2.0, 2.0);
        let (px, py) = (Points::new(&x, d).unwrap(), Points::new(&y, d).unwrap());
        DIST.assert_close("norms", &px.norms().unwrap(), &twin::sq_norms(&x, d));
        let got: Vec<f32> = px.sq_dists_block(0, n, &py).unwrap().to_vec().unwrap();
        DIST.assert_close("sq_dists", &got, &twin::sq_dists(&x, &y, d));
        // A block in the middle (row0 > 0).
        if n > 3 {
            let got: Vec<f32> = px.sq_dists_block(2, n - 3, &py).unwrap().to_vec().unwrap();
            let want = twin::sq_dists(&x[2 * d..(n - 1) * d], &y, d);
            DIST.assert_close("sq_dists block", &got, &want);
        }
        // Counts: radius between distances (no point sits on the boundary within tolerance).
        let eps2 = 1.3f32;
        let (count, _) = px.neighbours_block(0, n, eps2).unwrap();
        let all = twin::sq_dists(&x, &x, d);
        let want = twin::count_within(&x, d, eps2 as f64);
        for i in 0..n {
            let near_edge = (0..n).any(|j| (all[i * n + j] - eps2 as f64).abs() < 1e-3);
            if !near_edge {
                assert_eq!(count[i], want[i], "count row {i} n={n}");
            }
        }
        // Segmented sums with random labels (some clusters empty).
        let k = 1 + m % 7;
        let labels = rand_indices(n, seed(&format!("dl{n}")), k as u32);
        let lt = kiln::Tensor::from_slice(&labels, &[n]).unwrap();
        let got: Vec<f32> = px.cluster_sums(&lt, k).unwrap().to_vec().unwrap();
        Tolerance::F32_REDUCTION.assert_close(
            "sums",
            &got,
            &twin::centroid_sums(&x, &labels, d, k),
        );
    }
}

/// Lloyd on the GPU and the CPU twin from the same initial centroids: same labels, inertia within
/// float tolerance, same iteration count.
fn lloyd_both(x: &[f32], d: usize, k: usize, tag: &str) {
    let pts = Points::new(x, d).unwrap();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed(tag));
    let init = KMeans::new(k).initial_centroids(x, d, &mut rng).unwrap();
    let tol = 1e-4 * kmeans::mean_variance(x, d);
    let gpu = kmeans::lloyd_gpu(&pts, x, &init, 50, tol).unwrap();
    let cpu = twin::lloyd(x, &init, d, 50, tol, |c| {
        Ok::<_, ()>(twin::cpu_step(x, c, d))
    })
    .unwrap();
    assert_eq!(gpu.step.labels, cpu.step.labels, "{tag}: labels");
    assert_eq!(gpu.iterations, cpu.iterations, "{tag}: iterations");
    INERTIA.assert_close(&format!("{tag}: inertia"), &[gpu.inertia], &[cpu.inertia]);
    DIST.assert_close(
        &format!("{tag}: centroids"),
        &gpu.centroids,
        &f64s(&cpu.centroids),
    );
}

#[test]
fn lloyd_on_gpu_matches_cpu_twin_at_awkward_sizes() {
    lloyd_both(&[3.5], 1, 1, "n1k1");
    lloyd_both(&blobs(7, 3, 7, "kn"), 3, 7, "k=n");
    lloyd_both(&blobs(257, 5, 4, "b257"), 5, 4, "n257");
    lloyd_both(&blobs(1000, 2, 17, "b1000"), 2, 17, "n1000k17");
    // Duplicate points: each row three times.
    let base = blobs(40, 4, 3, "dup");
    let dup: Vec<f32> = base.chunks(4).flat_map(|r| [r, r, r].concat()).collect();
    lloyd_both(&dup, 4, 3, "duplicates");
    // A constant column.
    let mut c = blobs(129, 3, 5, "const");
    for r in c.chunks_mut(3) {
        r[1] = 2.5;
    }
    lloyd_both(&c, 3, 5, "constant column");
}

#[test]
fn lloyd_on_gpu_matches_cpu_twin_on_digits() {
    // The 1,797 real digits (raw pixels 0..16), k = 10, from the same k-means++ centroids.
    use kiln::data::Dataset;
    let ds = kiln::data::digits().unwrap();
    let x = ds.batch(&(0..ds.len()).collect::<Vec<_>>()).x;
    let d = 64;
    let pts = Points::new(&x, d).unwrap();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let init = KMeans::new(10).initial_centroids(&x, d, &mut rng).unwrap();
    let tol = 1e-4 * kmeans::mean_variance(&x, d);
    let gpu = kmeans::lloyd_gpu(&pts, &x, &init, 300, tol).unwrap();
    let cpu = twin::lloyd(&x, &init, d, 300, tol, |c| {
        Ok::<_, ()>(twin::cpu_step(&x, c, d))
    })
    .unwrap();
    println!(
        "digits k=10: GPU inertia {:.3} ({} iterations), CPU twin {:.3} ({} iterations)",
        gpu.inertia, gpu.iterations, cpu.inertia, cpu.iterations
    );
    assert_eq!(gpu.step.labels, cpu.step.labels);
    assert_eq!(gpu.iterations, cpu.iterations);
    INERTIA.assert_close("digits inertia", &[gpu.inertia], &[cpu.inertia]);
}

#[test]
fn an_empty_cluster_takes_the_farthest_point() {
    // Centroid 1 starts far from every point: it is empty after the first assignment and must
    // take the point farthest from its centroid (10.0), on both routes.
    let x = [0.0f32, 1.0, 2.0, 10.0];
    let init = [1.0f32, 100.0];
    let pts = Points::new(&x, 1).unwrap();
    let gpu = kmeans::lloyd_gpu(&pts, &x, &init, 10, 0.0).unwrap();
    let cpu = twin::lloyd(&x, &init, 1, 10, 0.0, |c| {
        Ok::<_, ()>(twin::cpu_step(&x, c, 1))
    })
    .unwrap();
    assert_eq!(gpu.relocated, 1);
    assert_eq!(gpu.step.labels, [0, 0, 0, 1]);
    assert_eq!(gpu.step.labels, cpu.step.labels);
    assert_eq!(gpu.centroids, [1.0, 10.0]);
}

#[test]
fn kmeans_finds_blobs_and_is_deterministic() {
    let (n, d, k) = (300, 4, 5);
    let x = blobs(n, d, k, "fit");
    let truth: Vec<i32> = (0..n).map(|i| (i % k) as i32).collect();
    let a = KMeans::new(k).seed(3).fit(&x, d).unwrap();
    let b = KMeans::new(k).seed(3).fit(&x, d).unwrap();
    assert_eq!(a, b, "same seed, same fit");
    // k-means|| seeds (candidate rounds on the GPU, weighted k-means++) find the same blobs.
    let par = KMeans {
        init: kiln::unsupervised::Init::Parallel,
        ..KMeans::new(k).seed(3).n_init(1)
    };
    let p = par.fit(&x, d).unwrap();
    assert_eq!(p, par.fit(&x, d).unwrap(), "k-means|| is deterministic");
    let got: Vec<i32> = p.labels.iter().map(|&l| l as i32).collect();
    assert!((adjusted_rand_index(&got, &truth) - 1.0).abs() < 1e-9);
    let got: Vec<i32> = a.labels.iter().map(|&l| l as i32).collect();
    assert!((adjusted_rand_index(&got, &truth) - 1.0).abs() < 1e-9);
    // The reported distances are the Euclidean distances to the reported centroids.
    for (i, &l) in a.labels.iter().enumerate() {
        let c = &a.centroids[l as usize * d..(l as usize + 1) * d];
        let want = twin::sq_dist(&x[i * d..(i + 1) * d], c).sqrt();
        assert!((a.distances[i] as f64 - want).abs() < 1e-2, "row {i}");
    }
}

#[test]
fn minibatch_on_gpu_matches_cpu_twin_and_finds_blobs() {
    use kiln::unsupervised::{MiniBatchKMeans, minibatch};
    use rand::SeedableRng;
    let (n, d, k) = (1000, 3, 4);
    let x = blobs(n, d, k, "mb");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let init = KMeans::new(k).initial_centroids(&x, d, &mut rng).unwrap();
    let run = |gpu: bool| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        minibatch::minibatch(&x, &init, d, 129, 20, &mut rng, |b, c| {
            if gpu {
                kmeans::gpu_step(&Points::new(b, d).unwrap(), c)
            } else {
                Ok(twin::cpu_step(b, c, d))
            }
        })
        .unwrap()
    };
    DIST.assert_close("mini-batch centroids", &run(true), &f64s(&run(false)));
    // End to end: the blobs are found and the chunked assignment agrees with the kernel twin.
    let fit = MiniBatchKMeans::new(k).batch_size(100).fit(&x, d).unwrap();
    let truth: Vec<i32> = (0..n).map(|i| (i % k) as i32).collect();
    let got: Vec<i32> = fit.labels.iter().map(|&l| l as i32).collect();
    assert!((adjusted_rand_index(&got, &truth) - 1.0).abs() < 1e-9);
    let (want, d2) = twin::assign(&x, &fit.centroids, d);
    assert_eq!(fit.labels, want);
    INERTIA.assert_close(
        "mini-batch inertia",
        &[fit.inertia],
        &[d2.iter().sum::<f64>()],
    );
}

#[test]
fn kmeans_bad_input_is_an_error() {
    let x = [1.0f32, 1.0, 1.0, 2.0];
    let msg = |r: kiln::Result<kiln::unsupervised::KMeansFit>| r.unwrap_err().to_string();
    assert!(msg(KMeans::new(3).fit(&x, 1)).contains("only 2 distinct points"));
    assert!(msg(KMeans::new(0).fit(&x, 1)).contains("k = 0"));
    assert!(msg(KMeans::new(5).fit(&x, 1)).contains("exceeds the 4 points"));
    assert!(msg(KMeans::new(1).fit(&[1.0, f32::NAN], 1)).contains("row 1"));
    assert!(msg(KMeans::new(1).fit(&[1.0, 2.0, 3.0], 2)).contains("do not form rows"));
}

#[test]
fn scores_match_known_values() {
    // scikit-learn: adjusted_rand_score([0,0,1,1],[0,0,1,2]) = 0.5714285714285715,
    // normalized_mutual_info_score(same) = 0.8000000000000002.
    let (a, b) = ([0, 0, 1, 1], [0, 0, 1, 2]);
    assert!((adjusted_rand_index(&a, &b) - 0.571_428_571_428_571_5).abs() < 1e-12);
    assert!((nmi(&a, &b) - 0.8).abs() < 1e-12);
    // Silhouette against a direct CPU computation.
    let (n, d) = (61, 3);
    let x = blobs(n, d, 3, "sil");
    let labels: Vec<i32> = (0..n).map(|i| (i % 3) as i32).collect();
    let got = silhouette(&x, d, &labels, 0).unwrap().unwrap();
    let dist =
        |i: usize, j: usize| twin::sq_dist(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d]).sqrt();
    let mut total = 0.0;
    for i in 0..n {
        let mean = |c: i32| {
            let js: Vec<usize> = (0..n).filter(|&j| j != i && labels[j] == c).collect();
            js.iter().map(|&j| dist(i, j)).sum::<f64>() / js.len() as f64
        };
        let a = mean(labels[i]);
        let b = (0..3)
            .filter(|&c| c != labels[i])
            .map(mean)
            .fold(f64::INFINITY, f64::min);
        total += (b - a) / a.max(b);
    }
    assert!(
        (got - total / n as f64).abs() < 1e-3,
        "{got} vs {}",
        total / n as f64
    );
    assert_eq!(
        silhouette(&x, d, &vec![0; n], 0).unwrap(),
        None,
        "one cluster"
    );
}

#[test]
fn dbscan_finds_dense_groups_and_noise() {
    // Two tight groups of 20 and 30 points and 3 isolated points, in 2-D.
    let mut x = Vec::new();
    let jitter = rand_vec(100, seed("db"), -0.2, 0.2);
    for i in 0..20 {
        x.extend([jitter[2 * i], jitter[2 * i + 1]]);
    }
    for i in 20..50 {
        x.extend([10.0 + jitter[2 * i], 10.0 + jitter[2 * i + 1]]);
    }
    x.extend([50.0, 50.0, -50.0, 0.0, 0.0, -50.0]);
    let fit = Dbscan::new(1.0, 4).fit(&x, 2).unwrap();
    let want: Vec<i32> = (0..53)
        .map(|i| {
            if i < 20 {
                0
            } else if i < 50 {
                1
            } else {
                -1
            }
        })
        .collect();
    assert_eq!(fit.labels, want);
    assert_eq!((fit.clusters, fit.noise), (2, 3));
    assert_eq!(fit.neighbours, twin::count_within(&x, 2, 1.0));
    assert!(Dbscan::new(0.0, 4).fit(&x, 2).is_err());
    assert!(Dbscan::new(1.0, 0).fit(&x, 2).is_err());
}

#[test]
fn pca_recovers_known_axes_and_variance() {
    // Points spread along (3, 4)/5 with variance ~100 and along (-4, 3)/5 with variance ~1.
    let n = 129;
    let a = rand_vec(n, seed("pa"), -17.0, 17.0);
    let b = rand_vec(n, seed("pb"), -1.7, 1.7);
    let x: Vec<f32> = (0..n)
        .flat_map(|i| [0.6 * a[i] - 0.8 * b[i] + 5.0, 0.8 * a[i] + 0.6 * b[i] - 2.0])
        .collect();
    let fit = Pca::new(2).fit(&x, 2).unwrap();
    assert!((fit.components[0] - 0.6).abs() < 1e-2 && (fit.components[1] - 0.8).abs() < 1e-2);
    let var = |v: &[f32]| {
        let m = v.iter().map(|&e| e as f64).sum::<f64>() / n as f64;
        v.iter().map(|&e| (e as f64 - m).powi(2)).sum::<f64>() / (n - 1) as f64
    };
    let z = fit.transform(&x).unwrap();
    let z0: Vec<f32> = z.iter().step_by(2).copied().collect();
    let z1: Vec<f32> = z.iter().skip(1).step_by(2).copied().collect();
    assert!((var(&z0) - fit.explained_variance[0]).abs() < 1e-3 * fit.explained_variance[0]);
    assert!((var(&z1) - fit.explained_variance[1]).abs() < 1e-2 * fit.explained_variance[1]);
    let total = fit.explained_variance_ratio.iter().sum::<f64>();
    assert!((total - 1.0).abs() < 1e-9);
    assert!(Pca::new(3).fit(&x, 2).is_err());
    assert!(Pca::new(0).fit(&x, 2).is_err());
}

use crate::cli_util;

mod cli {
    use super::cli_util::{each_fails, json, kiln, s, scratch_file, scratch_in};

    const IRIS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/iris.csv");
    const PENGUINS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/penguins.csv");

    fn lines(p: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Run `kiln args... --out DIR` in a fresh scratch folder named `name`; it must succeed.
    fn run_ok(name: &str, args: &[&str]) -> std::path::PathBuf {
        let dir = scratch_in("cluster", name);
        let mut all = args.to_vec();
        all.extend(["--out", s(&dir)]);
        let (ok, out, err) = kiln(&all);
        assert!(ok, "{args:?}: {out}{err}");
        dir
    }

    #[test]
    fn kmeans_on_iris_writes_the_run_directory() {
        let dir = run_ok("iris", &["cluster", IRIS, "--k", "3", "--label", "species"]);
        let a = lines(&dir.join("assignments.csv"));
        assert_eq!(a[0], "row,cluster,distance");
        assert_eq!(a.len(), 151);
        for (i, l) in a[1..].iter().enumerate() {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f[0], i.to_string(), "input row order");
            assert!(f[1].parse::<u32>().unwrap() < 3);
            assert!(f[2].parse::<f32>().unwrap() >= 0.0);
        }
        let c = lines(&dir.join("centroids.csv"));
        assert_eq!(c[0], "sepal_length,sepal_width,petal_length,petal_width");
        assert_eq!(c.len(), 4);
        let sm = json(&dir.join("summary.json"));
        // scikit-learn's KMeans(3) on StandardScaler'd iris: inertia 139.82, ARI 0.620.
        let inertia = sm["inertia"].as_f64().unwrap();
        assert!((inertia - 139.82).abs() < 0.01, "{inertia}");
        let ari = sm["adjusted_rand_index"].as_f64().unwrap();
        assert!((ari - 0.620).abs() < 0.005, "{ari}");
        assert!(sm["silhouette"].as_f64().unwrap() > 0.4);
        let png = image::open(dir.join("clusters.png")).unwrap();
        assert_eq!((png.width(), png.height()), (800, 600));
    }

    #[test]
    fn choose_k_pca_and_dbscan_on_real_tables() {
        let dir = run_ok("choose", &["cluster", IRIS, "--k", "2..4", "--n-init", "2"]);
        let k = lines(&dir.join("choose_k.csv"));
        assert_eq!(k.len(), 4, "{k:?}");
        assert!(dir.join("elbow.png").is_file());
        // PCA of standardised iris: scikit-learn's explained_variance_ratio_ 0.7296, 0.2285.
        let pdir = run_ok(
            "pca",
            &["pca", IRIS, "--components", "2", "--label", "species"],
        );
        let sm = json(&pdir.join("summary.json"));
        let r = sm["explained_variance_ratio"].as_array().unwrap();
        assert!((r[0].as_f64().unwrap() - 0.7296).abs() < 1e-3, "{r:?}");
        assert!((r[1].as_f64().unwrap() - 0.2285).abs() < 1e-3, "{r:?}");
        let p = lines(&pdir.join("projected.csv"));
        assert_eq!((p[0].as_str(), p.len()), ("pc1,pc2,species", 151));
        // DBSCAN on penguins (missing values, categorical columns, a dropped column).
        let ddir = run_ok(
            "dbscan",
            &[
                "cluster",
                PENGUINS,
                "--algo",
                "dbscan",
                "--eps",
                "1.5",
                "--min-samples",
                "5",
                "--drop",
                "year",
                "--label",
                "species",
            ],
        );
        let sm = json(&ddir.join("summary.json"));
        assert!(sm["clusters"].as_u64().unwrap() >= 2, "{sm}");
        assert_eq!(lines(&ddir.join("assignments.csv")).len(), 345);
    }

    #[test]
    fn bad_flags_and_data_are_clean_errors() {
        let (dir, dup) = scratch_file("cluster", "bad", "dup.csv", "a,b\n1,2\n1,2\n1,2\n");
        let out = s(&dir);
        let cases: &[(&[&str], &str)] = &[
            (&["cluster", IRIS, "--k", "0", "--out", out], "at least 1"),
            (
                &["cluster", IRIS, "--k", "151", "--out", out],
                "exceeds the 150 rows",
            ),
            (&["cluster", IRIS, "--k", "many", "--out", out], "--k many"),
            (&["cluster", IRIS, "--k", "5..2", "--out", out], "empty"),
            (
                &["cluster", IRIS, "--drop", "nosuch", "--out", out],
                "nosuch",
            ),
            (
                &["cluster", IRIS, "--label", "nosuch", "--out", out],
                "nosuch",
            ),
            (
                &["cluster", IRIS, "--algo", "spectral", "--out", out],
                "--algo spectral",
            ),
            (
                &["cluster", IRIS, "--algo", "dbscan", "--out", out],
                "--eps",
            ),
            (
                &[
                    "cluster", IRIS, "--algo", "dbscan", "--eps", "0", "--out", out,
                ],
                "eps = 0",
            ),
            (
                &["cluster", IRIS, "--n-init", "0", "--out", out],
                "--n-init",
            ),
            (
                &["cluster", s(&dup), "--k", "2", "--out", out],
                "only 1 distinct",
            ),
            (
                &[
                    "pca",
                    IRIS,
                    "--components",
                    "9",
                    "--label",
                    "species",
                    "--out",
                    out,
                ],
                "--components 9",
            ),
        ];
        each_fails(cases, &[]);
    }
}
