//! URV: uniform random vector zero-order gradient estimator for maxi
