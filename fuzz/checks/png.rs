//! PNG inputs: any bytes, for a model of 28×28 grey images and for a model whose shape is
//! unknown, must give an array or a usage error, never a panic or an unbounded allocation.
use maxi_cli::input::decode_png;

/// Panics when `data` breaks the PNG reader's contract.
pub fn check(data: &[u8]) {
    for shape in [Some(&[28usize, 28, 1][..]), Some(&[3, 8, 8][..]), None] {
        match decode_png(data, "fuzz.png", shape, [-0.5, 0.5]) {
            Ok(x) => {
                if let Some(s) = shape {
                    assert_eq!(x.shape(), s);
                }
                assert!(x.iter().all(|v| (-0.5..=0.5).contains(v)));
            }
            Err(e) => assert_eq!(e.code, 2, "{}", e.message),
        }
    }
}
