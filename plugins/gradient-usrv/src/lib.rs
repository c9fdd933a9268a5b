//! USRV: two-point unit-sphere random vector gradient estimator for maxi
