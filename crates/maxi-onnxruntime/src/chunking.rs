//! How a batch is cut into ONNX Runtime calls.

/// Rows per ONNX Runtime call when `batch_size` is not given and the model's rows turn out
/// not to be independent (see [`Chunking`]).
pub const FALLBACK_BATCH_SIZE: usize = 16;

/// The most rows in one ONNX Runtime call when `batch_size` is not given: bounds the memory
/// of intermediate activations for large batches (≈ 0.25 MB per row of the fixture CNN,
/// judging by peak RSS).
pub const MAX_ROWS_PER_CALL: usize = 256;

/// Input entries in one ONNX Runtime call when `batch_size` is not given (2 Mi entries,
/// 8 MiB of f32): with large items fewer rows go in a call than [`MAX_ROWS_PER_CALL`]
/// (13 rows of a 224×224×3 image), which keeps ONNX Runtime's activation memory bounded.
/// Items of up to 8,192 entries (the MNIST CNN's 784) keep 256 rows per call.
pub const MAX_ENTRIES_PER_CALL: usize = 2 << 20;

/// The most rows per call for items of `item_len` entries (see [`MAX_ENTRIES_PER_CALL`]).
pub fn max_rows_per_call(item_len: usize) -> usize {
    (MAX_ENTRIES_PER_CALL / item_len.max(1)).clamp(1, MAX_ROWS_PER_CALL)
}

/// How [`OrtModel`](crate::OrtModel) cuts a batch into ONNX Runtime calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    /// The batch is split into `threads × ⌈B / (threads × max_rows)⌉` contiguous parts of
    /// near-equal size (one call per session for batches up to `threads × max_rows` rows):
    /// the fastest split, and bit-identical for any `threads` because the model was found at
    /// load to compute each row independently of the rest of its call.
    Even {
        /// Most rows in one call.
        max_rows: usize,
    },
    /// Fixed chunks of this many rows (the last may be shorter), whatever `threads`: results
    /// are bit-identical for any `threads` for every model.
    Fixed(usize),
}

impl Chunking {
    /// `(first row, rows)` of each call for a batch of `rows` rows spread over `threads`
    /// sessions. Empty for an empty batch.
    pub fn bounds(self, rows: usize, threads: usize) -> Vec<(usize, usize)> {
        if rows == 0 {
            return Vec::new();
        }
        match self {
            Chunking::Fixed(size) => {
                let size = size.max(1);
                (0..rows)
                    .step_by(size)
                    .map(|start| (start, size.min(rows - start)))
                    .collect()
            }
            Chunking::Even { max_rows } => {
                let threads = threads.max(1);
                let per_round = threads * max_rows.max(1);
                let parts = (threads * rows.div_ceil(per_round)).min(rows);
                let (base, extra) = (rows / parts, rows % parts);
                let mut start = 0;
                (0..parts)
                    .map(|i| {
                        let len = base + usize::from(i < extra);
                        let chunk = (start, len);
                        start += len;
                        chunk
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_bounds() {
        let fixed = Chunking::Fixed(16);
        let b = fixed.bounds(101, 2);
        assert_eq!(b.len(), 7);
        assert_eq!(b[6], (96, 5));
        assert_eq!(b, fixed.bounds(101, 5), "fixed chunks ignore threads");
        assert!(fixed.bounds(0, 2).is_empty());
        let even = Chunking::Even { max_rows: 256 };
        assert_eq!(even.bounds(101, 1), vec![(0, 101)]);
        assert_eq!(even.bounds(101, 2), vec![(0, 51), (51, 50)]);
        assert_eq!(even.bounds(1, 2), vec![(0, 1)]);
        assert_eq!(even.bounds(3, 4), vec![(0, 1), (1, 1), (2, 1)]);
        assert!(even.bounds(0, 3).is_empty());
        // Large batches: calls of at most max_rows, a multiple of `threads` of them.
        let small = Chunking::Even { max_rows: 10 };
        let b = small.bounds(101, 2);
        assert_eq!(b.len(), 12);
        assert!(b.iter().all(|&(_, n)| n == 8 || n == 9));
        for (bounds, rows) in [
            (b, 101),
            (small.bounds(57, 3), 57),
            (even.bounds(1000, 2), 1000),
        ] {
            let mut next = 0;
            for (start, n) in bounds {
                assert_eq!(start, next);
                assert!(n > 0);
                next += n;
            }
            assert_eq!(next, rows);
        }
    }
}
