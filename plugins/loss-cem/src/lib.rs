//! CEM loss (pertinent positives and negatives) for maxi
