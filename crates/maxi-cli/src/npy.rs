//! `.npy` files read without trusting their header: the shape it claims must fit the bytes
//! that are actually in the file before anything is allocated for it.
//!
//! Format (numpy's `NEP 1`): the magic `\x93NUMPY`, a version byte pair, the header length
//! (`u16` in version 1, `u32` in versions 2 and 3), then a Python dict literal such as
//! `{'descr': '<f8', 'fortran_order': False, 'shape': (28, 28, 1), }` and the raw data.

use maxi::ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt};

/// Most bytes of header text accepted (numpy itself refuses headers over 10,000 bytes unless
/// asked; the header of a float array is under 200).
const MAX_HEADER_LEN: usize = 1 << 16;
/// Most nesting of tuples, lists and dicts in a header.
const MAX_DEPTH: usize = 16;

/// Why a `.npy` file cannot be read as a float array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NpyError {
    /// Not a well-formed `.npy` file, or a header that does not fit the file.
    Malformed(String),
    /// A well-formed file of another element type (the numpy `descr`, e.g. `<i8`).
    NotFloat(String),
}

/// What the header of a `.npy` file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// The element type, e.g. `<f8`.
    pub descr: String,
    /// Whether the data is stored column-major.
    pub fortran_order: bool,
    /// The array's shape.
    pub shape: Vec<usize>,
    /// Where the data starts in the file.
    pub data_offset: usize,
}

/// A value of the Python literal subset used by `.npy` headers.
#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Bool(bool),
    Int(u64),
    Seq(Vec<Lit>),
    Dict(Vec<(String, Lit)>),
    None,
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.pos < self.text.len() && self.text[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.text.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!(
                "expected `{}` at byte {} of the header",
                c as char, self.pos
            ))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Lit, String> {
        if depth > MAX_DEPTH {
            return Err("the header nests too deeply".into());
        }
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => self.string(q).map(Lit::Str),
            Some(b'(') => self.seq(b'(', b')', depth).map(Lit::Seq),
            Some(b'[') => self.seq(b'[', b']', depth).map(Lit::Seq),
            Some(b'{') => self.dict(depth).map(Lit::Dict),
            Some(c) if c.is_ascii_digit() => self.int(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.pos < self.text.len() && self.text[self.pos].is_ascii_alphanumeric() {
                    self.pos += 1;
                }
                match &self.text[start..self.pos] {
                    b"True" => Ok(Lit::Bool(true)),
                    b"False" => Ok(Lit::Bool(false)),
                    b"None" => Ok(Lit::None),
                    other => Err(format!(
                        "unexpected word `{}` in the header",
                        String::from_utf8_lossy(other)
                    )),
                }
            }
            Some(c) => Err(format!(
                "unexpected `{}` at byte {} of the header",
                c.escape_ascii(),
                self.pos
            )),
            None => Err("the header ends too early".into()),
        }
    }

    fn string(&mut self, quote: u8) -> Result<String, String> {
        self.pos += 1;
        let start = self.pos;
        while self.pos < self.text.len() && self.text[self.pos] != quote {
            if self.text[self.pos] == b'\\' {
                return Err("escapes in header strings are not supported".into());
            }
            self.pos += 1;
        }
        if self.pos >= self.text.len() {
            return Err("a string in the header is not closed".into());
        }
        let s = std::str::from_utf8(&self.text[start..self.pos])
            .map_err(|_| "a string in the header is not UTF-8".to_string())?;
        self.pos += 1;
        Ok(s.to_string())
    }

    fn int(&mut self) -> Result<Lit, String> {
        let start = self.pos;
        while self.pos < self.text.len() && self.text[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        let digits = std::str::from_utf8(&self.text[start..self.pos]).unwrap_or_default();
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("the number {digits} in the header is too large"))?;
        // Python 2 numpy wrote long integers as `3L`.
        if self.text.get(self.pos) == Some(&b'L') {
            self.pos += 1;
        }
        Ok(Lit::Int(n))
    }

    fn seq(&mut self, open: u8, close: u8, depth: usize) -> Result<Vec<Lit>, String> {
        self.expect(open)?;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => return Err(format!("expected `,` or `{}` in the header", close as char)),
            }
        }
    }

    fn dict(&mut self, depth: usize) -> Result<Vec<(String, Lit)>, String> {
        self.expect(b'{')?;
        let mut entries = Vec::new();
        loop {
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(entries);
                }
                Some(q @ (b'\'' | b'"')) => {
                    let key = self.string(q)?;
                    self.expect(b':')?;
                    let value = self.value(depth + 1)?;
                    entries.push((key, value));
                }
                _ => return Err("expected a quoted key in the header dict".into()),
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err("expected `,` or `}` in the header dict".into()),
            }
        }
    }
}

fn malformed(message: impl Into<String>) -> NpyError {
    NpyError::Malformed(message.into())
}

/// Reads and checks the header at the start of `bytes` (the whole file).
pub fn parse_header(bytes: &[u8]) -> Result<NpyHeader, NpyError> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(malformed(
            "it does not start with the .npy magic bytes \\x93NUMPY",
        ));
    }
    let major = bytes[6];
    let (len_bytes, header_start) = match major {
        1 => (2, 10),
        2 | 3 => (4, 12),
        v => {
            return Err(malformed(format!(
                "it has .npy format version {v}.{}; versions 1 to 3 are read",
                bytes[7]
            )));
        }
    };
    if bytes.len() < header_start {
        return Err(malformed("the file ends inside the .npy preamble"));
    }
    let mut len = [0u8; 4];
    len[..len_bytes].copy_from_slice(&bytes[8..8 + len_bytes]);
    let header_len = u32::from_le_bytes(len) as usize;
    if header_len > MAX_HEADER_LEN {
        return Err(malformed(format!(
            "its header claims {header_len} bytes (at most {MAX_HEADER_LEN} are accepted)"
        )));
    }
    let data_offset = header_start + header_len;
    if bytes.len() < data_offset {
        return Err(malformed(format!(
            "its header claims {header_len} bytes but the file has only {} after the preamble",
            bytes.len() - header_start
        )));
    }
    let mut parser = Parser {
        text: &bytes[header_start..data_offset],
        pos: 0,
    };
    let Lit::Dict(entries) = parser.value(0).map_err(malformed)? else {
        return Err(malformed("its header is not a dict"));
    };
    if parser.peek().is_some_and(|c| c != b'\n' && c != 0) {
        return Err(malformed("its header has text after the dict"));
    }
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    for (key, value) in entries {
        match (key.as_str(), value) {
            ("descr", Lit::Str(s)) => descr = Some(s),
            ("descr", _) => return Err(NpyError::NotFloat("a structured type".into())),
            ("fortran_order", Lit::Bool(b)) => fortran_order = Some(b),
            ("shape", Lit::Seq(dims)) => {
                let dims = dims
                    .into_iter()
                    .map(|d| match d {
                        Lit::Int(n) => usize::try_from(n).ok(),
                        _ => None,
                    })
                    .collect::<Option<Vec<usize>>>()
                    .ok_or_else(|| malformed("its shape is not a tuple of whole numbers"))?;
                shape = Some(dims);
            }
            (other, _) => {
                return Err(malformed(format!(
                    "its header has an unexpected or mistyped entry `{other}`"
                )));
            }
        }
    }
    let (Some(descr), Some(fortran_order), Some(shape)) = (descr, fortran_order, shape) else {
        return Err(malformed(
            "its header lacks one of descr, fortran_order and shape",
        ));
    };
    Ok(NpyHeader {
        descr,
        fortran_order,
        shape,
        data_offset,
    })
}

/// Bytes per entry of the float types read (`f4`, `f8`, either byte order); `None` otherwise.
fn float_size(descr: &str) -> Option<usize> {
    let t = descr.strip_prefix(['<', '>', '=', '|']).unwrap_or(descr);
    match t {
        "f4" => Some(4),
        "f8" => Some(8),
        _ => None,
    }
}

/// Checks that the header's shape and element type fit the file's length exactly; returns the
/// header.
pub fn check(bytes: &[u8]) -> Result<NpyHeader, NpyError> {
    let header = parse_header(bytes)?;
    let Some(size) = float_size(&header.descr) else {
        return Err(NpyError::NotFloat(header.descr));
    };
    let shape = &header.shape;
    let needed = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(size))
        .ok_or_else(|| {
            malformed(format!(
                "its header claims shape {shape:?}, more entries than any file can hold"
            ))
        })?;
    let have = bytes.len() - header.data_offset;
    if have != needed {
        return Err(malformed(format!(
            "its header claims shape {shape:?} of {} ({needed} bytes of data) but the file holds {have} bytes of data; the file is truncated or corrupt",
            header.descr
        )));
    }
    Ok(header)
}

/// Reads a float32 or float64 `.npy` file (its whole bytes) as `f64`, checking the header
/// against the file first so that nothing larger than the file is ever allocated.
pub fn read_f64(bytes: &[u8]) -> Result<ArrayD<f64>, NpyError> {
    let header = check(bytes)?;
    let bad = |e: ReadNpyError| malformed(e.to_string());
    if float_size(&header.descr) == Some(8) {
        ArrayD::<f64>::read_npy(bytes).map_err(|e| match e {
            ReadNpyError::WrongDescriptor(_) => NpyError::NotFloat(header.descr.clone()),
            e => bad(e),
        })
    } else {
        match ArrayD::<f32>::read_npy(bytes) {
            Ok(a) => Ok(a.mapv(f64::from)),
            Err(ReadNpyError::WrongDescriptor(_)) => Err(NpyError::NotFloat(header.descr)),
            Err(e) => Err(bad(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-1 `.npy` file with `header` (padded as numpy does) and `data`.
    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_what_ndarray_npy_writes() {
        let a = ArrayD::from_shape_vec(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5]).unwrap();
        let mut buf = Vec::new();
        ndarray_npy::WriteNpyExt::write_npy(&a, &mut buf).unwrap();
        let h = check(&buf).expect("valid");
        assert_eq!((h.descr.as_str(), h.shape.as_slice()), ("<f8", &[2, 3][..]));
        assert_eq!(read_f64(&buf).expect("read"), a);
        let b = a.mapv(|v| v as f32);
        let mut buf = Vec::new();
        ndarray_npy::WriteNpyExt::write_npy(&b, &mut buf).unwrap();
        assert_eq!(read_f64(&buf).expect("read f32"), a);
    }

    #[test]
    fn a_header_claiming_more_than_the_file_is_refused_before_allocating() {
        // 1e11 entries in a 128-byte file: would abort the process if trusted
        let f = file(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000,), }",
            &[0; 16],
        );
        match read_f64(&f) {
            Err(NpyError::Malformed(m)) => {
                assert!(
                    m.contains("[100000000000]") && m.contains("16 bytes"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        // a product that overflows
        let f = file(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }",
            &[],
        );
        assert!(matches!(read_f64(&f), Err(NpyError::Malformed(m)) if m.contains("more entries")));
        // too little and too much data
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
        assert!(read_f64(&file(h, &[0; 7])).is_err());
        assert!(read_f64(&file(h, &[0; 9])).is_err());
        assert_eq!(read_f64(&file(h, &[0; 8])).expect("fits").shape(), &[2]);
    }

    #[test]
    fn other_types_and_broken_headers() {
        let ints = file(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }",
            &[0; 8],
        );
        assert_eq!(read_f64(&ints), Err(NpyError::NotFloat("<i8".into())));
        for broken in [
            &b"not numpy"[..],
            b"\x93NUMPY\x09\x00\x00\x00",
            b"\x93NUMPY\x01\x00\xff\xff{",
        ] {
            assert!(
                matches!(read_f64(broken), Err(NpyError::Malformed(_))),
                "{broken:?}"
            );
        }
        for header in [
            "{'descr': '<f8', 'fortran_order': False, }",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }",
            "{'descr': '<f8', 'fortran_order': 0, 'shape': (1,), }",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'x': 1}",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), } trailing",
            "((((((((((((((((((((((((((((((((((((((((((",
        ] {
            assert!(
                matches!(
                    read_f64(&file(header, &[0; 8])),
                    Err(NpyError::Malformed(_))
                ),
                "{header}"
            );
        }
        // Python 2 long integers are accepted
        let old = file(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1L,), }",
            &[0; 8],
        );
        assert_eq!(check(&old).expect("py2").shape, vec![1]);
    }
}
