//! Learning without labels: k-means, mini-batch k-means, DBSCAN, PCA and outlier detection
//! (kernels against their CPU twins, the library, and `kiln cluster` / `kiln pca` /
//! `kiln outliers` end to end); frequent itemsets and association rules (`kiln rules`);
//! semi-supervised training (`kiln train --semi`).
//!
//! One test binary per theme (fewer links, smaller target/); each module was a test file.

#[path = "../common/cli.rs"]
mod cli_util;
#[path = "../common/mod.rs"]
mod common;

mod cluster;
mod outlier;
mod outlier_cli;
mod rules;
mod rules_cli;
mod semi;
mod semi_cli;
