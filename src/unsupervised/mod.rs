//! Learning without labels on the GPU: k-means, DBSCAN, PCA, and the scores that judge them.
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
//! | `outlier/` | outlier scores: [`IsolationForest`], [`Lof`], [`Mahalanobis`], [`RobustZ`], [`Autoencoder`] |
//!
//! The kernels are `shaders/cluster.wgsl` (launchers `kiln_kernels::launch::cluster`, CPU twin
//! `kiln_kernels::reference::cluster`); the commands are `kiln cluster` and `kiln pca`.

pub mod dbscan;
pub mod distance;
pub mod features;
pub mod kmeans;
pub mod metrics;
pub mod minibatch;
pub mod outlier;
pub mod pca;

pub use dbscan::{Dbscan, DbscanFit};
pub use distance::Points;
pub use features::{FeatureOptions, Features, prepare_features};
pub use kmeans::{Init, KMeans, KMeansFit};
pub use minibatch::MiniBatchKMeans;
pub use outlier::{Autoencoder, IsolationForest, Lof, Mahalanobis, RobustZ};
pub use pca::{Pca, PcaFit};
