# Run: python3 -m venv V && V/bin/pip install scikit-learn && V/bin/python scripts/outlier-reference.py data/breast_cancer_outliers.csv
# Reference figures: scikit-learn on data/breast_cancer_outliers.csv (standardised like kiln).
import sys, numpy as np
from sklearn.preprocessing import StandardScaler
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.covariance import EmpiricalCovariance, MinCovDet
from sklearn.metrics import roc_auc_score, average_precision_score
rows = [l.strip().split(',') for l in open(sys.argv[1])][1:]
X = np.array([[float(v) for v in r[:-1]] for r in rows]); y = np.array([r[-1] == 'malignant' for r in rows])
Xs = StandardScaler().fit_transform(X)
def rep(name, s): print(f"{name}: ROC-AUC {roc_auc_score(y, s):.4f} AP {average_precision_score(y, s):.4f}")
aucs = []
for seed in range(5):
    s = -IsolationForest(random_state=seed).fit(Xs).score_samples(Xs); aucs.append((roc_auc_score(y, s), average_precision_score(y, s)))
print("IsolationForest seeds 0-4: ROC-AUC", [round(a, 4) for a, _ in aucs], "mean %.4f" % np.mean([a for a, _ in aucs]), "AP mean %.4f" % np.mean([p for _, p in aucs]))
rep("LOF k=20", -LocalOutlierFactor(n_neighbors=20).fit(Xs).negative_outlier_factor_)
rep("Mahalanobis (EmpiricalCovariance)", EmpiricalCovariance().fit(Xs).mahalanobis(Xs))
rep("MinCovDet", MinCovDet(random_state=0).fit(Xs).mahalanobis(Xs))
