//! maxi: explain black-box classifiers by optimisation (facade linking every built-in component)
