//! The seed tutorial's URV estimator written by a third party as a maxi plugin
