//! `MAXI_PLUGIN_PATH` is read from the environment (one test: it changes the environment).

use maxi_plugin_host::{PLUGIN_PATH_ENV, plugin_paths_from_env};

#[test]
fn plugin_paths_come_from_maxi_plugin_path() {
    let dir = std::env::temp_dir().join(format!("maxi-plugin-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("folder");
    std::fs::write(dir.join("x.so"), "").expect("file");
    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe { std::env::remove_var(PLUGIN_PATH_ENV) };
    assert!(plugin_paths_from_env().expect("unset").is_empty());
    // SAFETY: as above.
    unsafe { std::env::set_var(PLUGIN_PATH_ENV, &dir) };
    assert_eq!(
        plugin_paths_from_env().expect("set"),
        vec![dir.join("x.so")]
    );
    // SAFETY: as above.
    unsafe { std::env::set_var(PLUGIN_PATH_ENV, dir.join("absent.so")) };
    let e = plugin_paths_from_env().expect_err("missing entry");
    assert!(e.is_usage() && e.to_string().contains("absent.so"), "{e}");
    // SAFETY: as above.
    unsafe { std::env::remove_var(PLUGIN_PATH_ENV) };
    std::fs::remove_dir_all(&dir).expect("clean up");
}
