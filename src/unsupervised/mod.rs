//! Learning without labels on the GPU: k-means, DBSCAN, PCA, association rules, outlier scores,
//! label spreading, and the scores that judge them.
//!
//! | file | what |
//! | --- | --- |
//! | `distance.rs` | [`Points`]: points on the GPU, squared distances as GEMM + norms, by blocks |
//! | `kmeans.rs` | [`KMeans`]: Lloyd on the GPU, k-means++ restarts, CPU twin from the same seeds |
//! | `minibatch.rs` | [`MiniBatchKMeans`]: one batch on the GPU at a time, running-mean updates |
//! | `dbscan.rs` | [`Dbscan`]: density clusters, neighbour counts on the GPU, noise = -1 |
//! | `pca.rs` | [`Pca`]: covariance by GEMM, Jacobi eigen-decomposition of the d x d matrix |
//! | `metrics.rs` | silhouette, adjusted Rand index, NMI |
//! | `features.rs` | a CSV table to features, through `kiln train`'s preparation |
//! | `transactions.rs`, `apriori.rs`, `rules.rs` | [`Transactions`] from baskets or tables, [`Apriori`] (support counts on the GPU, `itemsets.wgsl`), association rules; `kiln rules` |
//! | `spread.rs` | [`LabelSpreading`]: semi-supervised labels over a k-NN graph (`kiln train --semi spread`) |
//! | `outlier/` | outlier scores: [`IsolationForest`], [`Lof`], [`Mahalanobis`], [`RobustZ`], [`Autoencoder`] |
//!
//! The kernels are `shaders/cluster.wgsl`, `itemsets.wgsl` and `outlier.wgsl` (launchers in
//! `kiln_kernels::launch::{cluster, itemsets, outlier}`, CPU twins in
//! `kiln_kernels::reference`); the commands are `kiln cluster`, `kiln pca`, `kiln rules`,
//! `kiln outliers` and `kiln train --semi spread`.

pub mod apriori;
pub mod dbscan;
pub mod distance;
pub mod features;
pub mod kmeans;
pub mod metrics;
pub mod minibatch;
pub mod outlier;
pub mod pca;
pub mod rules;
pub mod spread;
pub mod transactions;

pub use apriori::{Apriori, FrequentItemsets, Itemset};
pub use dbscan::{Dbscan, DbscanFit};
pub use distance::Points;
pub use features::{FeatureOptions, Features, prepare_features};
pub use kmeans::{Init, KMeans, KMeansFit};
pub use minibatch::MiniBatchKMeans;
pub use outlier::{Autoencoder, IsolationForest, Lof, Mahalanobis, RobustZ};
pub use pca::{Pca, PcaFit};
pub use rules::{Rule, RuleOptions, RuleOrder, Rules, association_rules};
pub use spread::{LabelSpreading, SpreadFit};
pub use transactions::{TableItems, Transactions};
