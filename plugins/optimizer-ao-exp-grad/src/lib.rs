//! AO-ExpGrad optimiser for maxi
