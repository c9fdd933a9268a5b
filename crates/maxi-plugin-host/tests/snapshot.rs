//! The registry is shared as a snapshot: holding one never blocks loading a plugin.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::example_plugin;
use maxi_core::{GradientKind, registry};
use maxi_plugin_host::load_plugin;

#[test]
fn loading_a_plugin_while_a_registry_snapshot_is_held_finishes() {
    let path = example_plugin();
    let snapshot = registry::global().expect("registry");
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(load_plugin(&path).map_err(|e| e.to_string()));
    });
    let names = finished
        .recv_timeout(Duration::from_secs(120))
        .expect("loading the plugin did not finish while a registry snapshot was held")
        .expect("load the plugin");
    assert_eq!(names, ["urv_tutorial"]);
    // the held snapshot is as it was; a new one has the plugin
    assert!(snapshot.get::<GradientKind>("urv_tutorial").is_err());
    assert!(
        registry::global()
            .expect("registry")
            .get::<GradientKind>("urv_tutorial")
            .is_ok()
    );
    drop(snapshot);
}
