//! Faulty plugins are contained and named: every load problem is a usage error naming the file
//! and the reason, every run-time problem a runtime error naming the file and the reason, and
//! the process never aborts.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{
    PanickingLoss, SquaredNorm, faulty_plugins, gradient, input, kw, linear_model, point,
    private_copy, problem, scratch_dir,
};
use maxi_core::{Bounds, ExplanationGenerator, Kind, MaxiError, registry, rng_from_seed};
use maxi_plugin_host::load_plugin;
use serde_json::json;

// the built-ins the faulty plugin collides with or runs next to
use maxi_gradient_urv as _;
use maxi_loss_cem as _;
use maxi_optimizer_ao_exp_grad as _;

/// A private copy of the faulty plugin whose entry point returns the descriptor of `mode`.
fn faulty_with_mode(case: &str, mode: u32) -> PathBuf {
    let (faulty, _) = faulty_plugins();
    let copy = private_copy(&faulty, case);
    // SAFETY: the test's own fixture library; `faulty_set_mode` has this signature.
    unsafe {
        let lib = libloading::Library::new(&copy).expect("open fixture");
        let set: libloading::Symbol<'_, extern "C" fn(u32)> =
            lib.get(b"faulty_set_mode\0").expect("faulty_set_mode");
        set(mode);
        // keep it loaded: the host's load must find this instance with its mode
        std::mem::forget(lib);
    }
    copy
}

/// Loads `path`, expecting a `MaxiError::Plugin` naming it; returns the reason.
fn plugin_error(path: &Path) -> String {
    match load_plugin(path) {
        Err(MaxiError::Plugin { path: p, message }) => {
            assert_eq!(p, path.display().to_string());
            let e = MaxiError::Plugin {
                path: p,
                message: message.clone(),
            };
            assert!(e.is_usage(), "load problems are usage errors (exit 2)");
            assert!(e.to_string().contains(&path.display().to_string()));
            message
        }
        other => panic!(
            "expected a plugin error for {}, got {other:?}",
            path.display()
        ),
    }
}

fn gradient_names() -> Vec<String> {
    registry::global()
        .expect("registry")
        .metas(Some(Kind::Gradient))
        .iter()
        .map(|c| c.name.clone())
        .collect()
}

#[test]
fn missing_path_is_named() {
    let path = scratch_dir().join("no-such-plugin.so");
    let reason = plugin_error(&path);
    assert!(reason.contains("no such file"), "{reason}");
}

#[test]
fn folder_is_not_a_plugin() {
    let reason = plugin_error(&scratch_dir());
    assert!(reason.contains("is a folder"), "{reason}");
}

#[test]
fn file_that_is_not_a_shared_library() {
    let path = scratch_dir().join(format!("not-a-library-{}.so", std::process::id()));
    std::fs::write(&path, "this is a text file, not an ELF shared object\n").expect("write");
    let reason = plugin_error(&path);
    assert!(reason.contains("not a loadable shared library"), "{reason}");
}

#[test]
fn library_without_entry_symbol() {
    let (_, no_entry) = faulty_plugins();
    let reason = plugin_error(&no_entry);
    assert!(
        reason.contains("no `maxi_plugin_entry` symbol") && reason.contains("not a maxi plugin"),
        "{reason}"
    );
}

#[test]
fn wrong_abi_version() {
    let reason = plugin_error(&faulty_with_mode("faulty-abi", 1));
    assert!(
        reason.contains("ABI version 999") && reason.contains("speaks version 1"),
        "{reason}"
    );
    assert!(!gradient_names().contains(&"faulty_abi".to_string()));
}

#[test]
fn struct_size_too_small() {
    let reason = plugin_error(&faulty_with_mode("faulty-size", 2));
    assert!(reason.contains("struct_size 8 is smaller than"), "{reason}");
    assert!(!gradient_names().contains(&"faulty_size".to_string()));
}

#[test]
fn null_descriptor() {
    let reason = plugin_error(&faulty_with_mode("faulty-null", 3));
    assert!(reason.contains("returned null"), "{reason}");
}

#[test]
fn component_descriptor_too_small() {
    let reason = plugin_error(&faulty_with_mode("faulty-component-size", 5));
    assert!(
        reason.contains("component 0: struct_size 4 is smaller than"),
        "{reason}"
    );
}

#[test]
fn schema_that_is_not_json() {
    let reason = plugin_error(&faulty_with_mode("faulty-schema", 6));
    assert!(
        reason.contains("`faulty_schema`: kwargs schema is not valid JSON"),
        "{reason}"
    );
}

#[test]
fn missing_compute_function() {
    let reason = plugin_error(&faulty_with_mode("faulty-no-compute", 7));
    assert!(
        reason.contains("gradient_compute function is missing"),
        "{reason}"
    );
}

#[test]
fn loss_components_are_refused_for_now() {
    let reason = plugin_error(&faulty_with_mode("faulty-loss", 8));
    assert!(reason.contains("only gradients"), "{reason}");
}

#[test]
fn duplicate_of_a_built_in_name() {
    let path = faulty_with_mode("faulty-urv", 4);
    match load_plugin(&path) {
        Err(e @ MaxiError::DuplicateComponent { .. }) => {
            assert!(e.is_usage());
            let MaxiError::DuplicateComponent {
                kind,
                ref name,
                ref first,
                ref second,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(kind, Kind::Gradient);
            assert_eq!(name, "urv");
            assert_eq!(first, "crate maxi-gradient-urv");
            assert_eq!(second, &format!("plugin {}", path.display()));
        }
        other => panic!("expected a duplicate name, got {other:?}"),
    }
    // the built-in is untouched
    let urv = registry::global()
        .expect("registry")
        .get::<maxi_core::GradientKind>("urv")
        .expect("urv");
    assert_eq!(urv.meta.origin, "crate maxi-gradient-urv");
}

#[test]
fn duplicate_within_one_plugin_registers_nothing() {
    let path = faulty_with_mode("faulty-twice", 9);
    match load_plugin(&path) {
        Err(MaxiError::DuplicateComponent { name, second, .. }) => {
            assert_eq!(name, "faulty_twice");
            assert!(second.contains(&path.display().to_string()));
        }
        other => panic!("expected a duplicate name, got {other:?}"),
    }
    assert!(!gradient_names().contains(&"faulty_twice".to_string()));
}

/// The working faulty plugin (component `faulty`), loaded once.
fn faulty_loaded() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = faulty_with_mode("faulty", 0);
        let names = load_plugin(&path).expect("load the faulty plugin");
        assert_eq!(names, vec!["faulty".to_string()]);
        path
    })
}

/// Computes one gradient with the `faulty` component doing `fault`.
fn compute(fault: &str) -> maxi_core::Result<maxi_core::ndarray::ArrayD<f64>> {
    faulty_loaded();
    let shape = [2, 3];
    let mut g = gradient("faulty", json!({ "fault": fault }), &shape)?;
    let p = problem(SquaredNorm::new(&shape), &shape);
    g.gradient_at(&p, point(&shape).view(), &mut rng_from_seed(0))
}

/// Expects a runtime error naming the plugin file, the component and `reason`.
fn expect_runtime(result: maxi_core::Result<impl std::fmt::Debug>, reason: &str) -> MaxiError {
    let path = faulty_loaded().display().to_string();
    let e = result.expect_err("the plugin's fault must be an error");
    assert!(
        !e.is_usage(),
        "run-time faults are runtime errors (exit 1): {e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains(&format!("plugin {path}")) && text.contains("gradient `faulty`"),
        "{text}"
    );
    assert!(text.contains(reason), "expected `{reason}` in: {text}");
    e
}

#[test]
fn working_component_returns_its_gradient() {
    let shape = [2, 3];
    let g = compute("none").expect("gradient");
    assert_eq!(g, point(&shape).mapv(|v| 2.0 * v));
}

#[test]
fn create_that_panics() {
    faulty_loaded();
    let e = expect_runtime(
        gradient("faulty", json!({"fault": "panic_in_create"}), &[2, 3]).map(|_| ()),
        "create panicked: deliberate panic in create",
    );
    assert!(
        matches!(e, MaxiError::Runtime { iteration: 0, .. }),
        "{e:?}"
    );
}

#[test]
fn create_that_fails() {
    faulty_loaded();
    expect_runtime(
        gradient("faulty", json!({"fault": "error_in_create"}), &[2, 3]).map(|_| ()),
        "create failed: deliberate error in create",
    );
}

#[test]
fn compute_that_panics() {
    expect_runtime(
        compute("panic_in_compute"),
        "compute panicked: deliberate panic in compute",
    );
}

#[test]
fn compute_that_fails() {
    expect_runtime(
        compute("error_in_compute"),
        "compute failed: deliberate error in compute",
    );
}

#[test]
fn result_of_the_wrong_shape() {
    expect_runtime(
        compute("wrong_shape"),
        "returned a gradient of shape [7], expected [2, 3]",
    );
}

#[test]
fn result_with_nan() {
    expect_runtime(compute("nan"), "non-finite value (NaN) at flat index 0");
}

#[test]
fn result_with_infinity() {
    expect_runtime(
        compute("infinite"),
        "non-finite value (inf) at flat index 5",
    );
}

#[test]
fn a_panic_in_the_hosts_loss_is_contained() {
    faulty_loaded();
    let shape = [3];
    let mut g = gradient("faulty", json!({}), &shape).expect("gradient");
    let p = problem(PanickingLoss(Bounds::unbounded(&shape)), &shape);
    let e = g
        .gradient_at(&p, point(&shape).view(), &mut rng_from_seed(0))
        .expect_err("the loss panicked");
    assert!(
        e.to_string()
            .contains("the loss panicked: deliberate panic in the host's loss"),
        "{e}"
    );
    // the instance is still usable afterwards
    let p = problem(SquaredNorm::new(&shape), &shape);
    let y = point(&shape);
    assert_eq!(
        g.gradient_at(&p, y.view(), &mut rng_from_seed(0))
            .expect("gradient"),
        y.mapv(|v| 2.0 * v)
    );
}

#[test]
fn kwargs_problems_are_usage_errors_naming_the_field() {
    faulty_loaded();
    let path = faulty_loaded().display().to_string();
    let component = registry::global()
        .expect("registry")
        .get::<maxi_core::GradientKind>("faulty")
        .expect("faulty");
    match component.prepare(&kw(json!({"level": -1.0}))) {
        Err(MaxiError::InvalidKwarg { field, message, .. }) => {
            assert_eq!(field, "level");
            assert!(message.contains("must not be negative") && message.contains(&path));
        }
        other => panic!("expected an invalid kwarg, got {:?}", other.map(|_| ())),
    }
    match component.prepare(&kw(json!({"fault": "explode"}))) {
        Err(MaxiError::InvalidKwarg { field, message, .. }) => {
            assert_eq!(field, "fault");
            assert!(message.contains("unknown variant `explode`"), "{message}");
        }
        other => panic!("expected an invalid kwarg, got {:?}", other.map(|_| ())),
    }
    match component.prepare(&kw(json!({"levle": 1.0}))) {
        Err(MaxiError::UnknownKwarg { key, accepted, .. }) => {
            assert_eq!(key, "levle");
            assert_eq!(accepted, vec!["fault", "level", "lvl"]);
        }
        other => panic!("expected an unknown kwarg, got {:?}", other.map(|_| ())),
    }
    // defaults are filled in by the plugin
    let parsed = component.prepare(&kw(json!({}))).expect("kwargs");
    assert_eq!(parsed.kwargs_json(), json!({"fault": "none", "level": 0.0}));
}

#[test]
fn kwarg_aliases_cross_the_abi() {
    faulty_loaded();
    let component = registry::global()
        .expect("registry")
        .get::<maxi_core::GradientKind>("faulty")
        .expect("faulty");
    assert_eq!(
        component.meta.kwarg_aliases,
        vec![("lvl".to_string(), "level".to_string())]
    );
    // the plugin's own alias reaches its parser, which normalises it
    let parsed = component
        .prepare(&kw(json!({"lvl": 2.5})))
        .expect("alias accepted");
    assert_eq!(parsed.kwargs_json(), json!({"fault": "none", "level": 2.5}));
    match component.prepare(&kw(json!({"lvl": -1.0}))) {
        Err(MaxiError::InvalidKwarg { field, .. }) => assert_eq!(field, "level"),
        other => panic!("expected an invalid kwarg, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn an_older_component_descriptor_loads_without_kwarg_aliases() {
    let path = faulty_with_mode("faulty-v1", 10);
    assert_eq!(load_plugin(&path).expect("load"), vec!["faulty_v1"]);
    let component = registry::global()
        .expect("registry")
        .get::<maxi_core::GradientKind>("faulty_v1")
        .expect("faulty_v1");
    // the field past its struct_size is not read, although the memory holds it
    assert!(component.meta.kwarg_aliases.is_empty());
    assert!(matches!(
        component.prepare(&kw(json!({"lvl": 1.0}))),
        Err(MaxiError::UnknownKwarg { .. })
    ));
    assert!(component.prepare(&kw(json!({"level": 1.0}))).is_ok());
}

#[test]
fn a_kwarg_alias_for_no_kwarg_is_refused() {
    let reason = plugin_error(&faulty_with_mode("faulty-alias", 12));
    assert!(
        reason.contains("`faulty_alias`: kwarg aliases: `lvl` stands for \"nope\", which is not one of its kwargs"),
        "{reason}"
    );
}

#[test]
fn a_loss_callback_kept_past_compute_gets_an_error_status() {
    let path = faulty_with_mode("faulty-keeper", 11);
    assert_eq!(load_plugin(&path).expect("load"), vec!["faulty_keeper"]);
    let shape = [2, 3];
    let y = point(&shape);
    let mut g = gradient("faulty_keeper", json!({}), &shape).expect("gradient");
    let p = problem(SquaredNorm::new(&shape), &shape);
    let first = g
        .gradient_at(&p, y.view(), &mut rng_from_seed(0))
        .expect("compute");
    assert_eq!(first, y.mapv(|v| 2.0 * v));
    // SAFETY: the test's own fixture library, already loaded (the same instance and statics);
    // `faulty_call_kept_loss` has this signature.
    let (status, message) = unsafe {
        let lib = libloading::Library::new(&path).expect("open fixture");
        let call: libloading::Symbol<'_, extern "C" fn(*mut u8, usize) -> i32> = lib
            .get(b"faulty_call_kept_loss\0")
            .expect("faulty_call_kept_loss");
        let mut buf = [0u8; 512];
        let status = call(buf.as_mut_ptr(), buf.len());
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        std::mem::forget(lib);
        (status, String::from_utf8_lossy(&buf[..end]).into_owned())
    };
    assert_eq!(status, maxi_plugin::abi::STATUS_ERROR, "{message}");
    assert!(
        message.contains("called outside a compute call"),
        "{message}"
    );
    // the host and the instance are unharmed
    let again = g
        .gradient_at(&p, y.view(), &mut rng_from_seed(1))
        .expect("compute again");
    assert_eq!(again, first);
}

fn generator(fault: &str) -> maxi_core::Result<ExplanationGenerator> {
    faulty_loaded();
    ExplanationGenerator::builder()
        .loss("cem", kw(json!({"mode": "PN", "c": 1.0})))
        .optimizer("ao_exp_grad", kw(json!({"l1": 0.1})))
        .gradient("faulty", kw(json!({ "fault": fault })))
        .num_iter(3)
        .build()
}

#[test]
fn pipeline_faults_are_runtime_errors_naming_the_file() {
    let shape = [2, 3];
    let x = input(&shape);
    let model = linear_model(&shape, 3);
    // a working plugin runs
    let e = generator("none")
        .expect("generator")
        .run(x.view(), model.clone())
        .expect("run");
    assert_eq!(e.history.len(), 3);
    // set-up (create) and update (compute) faults stop the run with a runtime error
    for (fault, reason) in [
        ("panic_in_create", "create panicked"),
        ("panic_in_compute", "compute panicked"),
        ("wrong_shape", "returned a gradient of shape [7]"),
        ("nan", "non-finite value (NaN)"),
    ] {
        let result = generator(fault)
            .expect("kwargs are valid")
            .run(x.view(), model.clone());
        expect_runtime(result, reason);
    }
    // bad kwargs stop the build with a usage error
    let e = generator("explode").expect_err("invalid kwarg");
    assert!(e.is_usage());
}
