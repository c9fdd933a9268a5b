//! PNG inputs: any bytes, for a model of 28×28 grey images, one of 3×8×8 images and one whose
//! shape is unknown, must give an array of the model's shape in its range or a usage error,
//! never a panic or an unbounded allocation. The input is also checked with its chunk CRCs
//! repaired, so that mutations get past the CRC check to the decompressor and the filters.

use maxi_cli::input::decode_png;

/// Panics when `data`, as it is or with its chunk CRCs repaired, breaks the PNG reader's
/// contract.
pub fn check(data: &[u8]) {
    decode_all(data);
    if let Some(repaired) = with_crcs_repaired(data) {
        decode_all(&repaired);
    }
}

fn decode_all(data: &[u8]) {
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

/// `data` with the CRC of every complete chunk after the 8-byte signature recomputed, or
/// `None` when they are all right already (or there are none).
fn with_crcs_repaired(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = data.to_vec();
    let mut changed = false;
    let mut at = 8;
    while let Some(len) = out
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes(b.try_into().unwrap()) as usize)
    {
        // length, type, data, CRC (over type and data)
        let Some(end) = at.checked_add(12 + len).filter(|&e| e <= out.len()) else {
            break;
        };
        let crc = crc32(&out[at + 4..end - 4]).to_be_bytes();
        changed |= out[end - 4..end] != crc;
        out[end - 4..end].copy_from_slice(&crc);
        at = end;
    }
    changed.then_some(out)
}

/// The CRC-32 (ISO-HDLC, as PNG uses) of `bytes`, bit by bit: inputs are small.
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |mut c, &b| {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        c
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32_is_the_png_one() {
        assert_eq!(super::crc32(b"IEND"), 0xae42_6082);
        assert_eq!(super::crc32(b"123456789"), 0xcbf4_3926);
    }
}
