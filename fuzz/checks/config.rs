//! Config files: any text, read as TOML or JSON (chosen by the first byte), must give a
//! config or a usage error (exit code 2) naming the file, never a panic.

use std::path::Path;

use maxi_cli::config::Config;

/// Panics when `data` breaks the config parser's contract.
pub fn check(data: &[u8]) {
    let Some((&format, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let file = if format % 2 == 0 {
        "fuzz.toml"
    } else {
        "fuzz.json"
    };
    if let Err(e) = Config::from_text(text, Path::new(file)) {
        assert_eq!(e.code, 2, "{}", e.message);
        assert!(e.message.contains(file), "{}", e.message);
    }
}
