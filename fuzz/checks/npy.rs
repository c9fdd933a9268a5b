//! `.npy` inputs: any bytes must give an array or an error, never a panic, and nothing larger
//! than the file may be allocated for the data (an array of `n` entries needs `4n` or `8n`
//! bytes of file).

/// Panics when `data` breaks the `.npy` reader's contract.
pub fn check(data: &[u8]) {
    if let Ok(a) = maxi_cli::npy::read_f64(data) {
        assert!(a.len().saturating_mul(4) <= data.len(), "{:?}", a.shape());
    }
}
