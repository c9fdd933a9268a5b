//! AdaExpGrad optimiser for maxi
