//! The `<backend>.plan_cache` setting: how many per-shape plans a model keeps.

use super::*;
use std::path::PathBuf;

fn ocr_cls() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/generated/ocr_cls/model.onnx");
    assert!(
        path.exists(),
        "fixture {} is missing: run scripts/setup.sh",
        path.display()
    );
    path
}

fn options(value: Option<&str>) -> LoadOptions {
    LoadOptions {
        threads: Some(1),
        settings: value
            .map(|v| vec![("tract-cpu.plan_cache".to_string(), v.to_string())])
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn cached_plans(model: &TractModel) -> usize {
    match &model.plan {
        Plan::PerShape { cache, .. } => cache.lock().unwrap().len(),
        Plan::Static(_) => panic!("the fixture was expected to be planned per shape"),
    }
}

/// Runs images of three widths through `model`.
fn three_shapes(model: &TractModel) {
    for width in [48, 64, 80] {
        let input = Tensor::from_vec(vec![1, 3, 48, width], vec![0f32; 3 * 48 * width]).unwrap();
        model.infer(&[input]).expect("inference");
    }
}

#[test]
fn the_setting_bounds_the_plans_a_per_shape_model_keeps() {
    let path = ocr_cls();
    let default = load(&CPU, &path, &options(None), Default::default()).unwrap();
    // The load checked a sample shape without keeping a plan for it.
    assert_eq!(cached_plans(&default), 0);
    three_shapes(&default);
    assert_eq!(
        cached_plans(&default),
        3,
        "the default keeps {SHAPE_PLAN_CACHE}"
    );

    let two = load(&CPU, &path, &options(Some("2")), Default::default()).unwrap();
    three_shapes(&two);
    assert_eq!(cached_plans(&two), 2);
    // The most recently used plans stay: the last width is served from the cache.
    let input = Tensor::from_vec(vec![1, 3, 48, 80], vec![0f32; 3 * 48 * 80]).unwrap();
    two.infer(&[input]).unwrap();
    assert_eq!(cached_plans(&two), 2);
}

#[test]
fn a_bad_value_is_a_configuration_error_that_says_what_is_accepted() {
    for bad in ["0", "65", "many", "-1"] {
        let err = load(&CPU, &ocr_cls(), &options(Some(bad)), Default::default())
            .err()
            .unwrap_or_else(|| panic!("{bad} was accepted"));
        let text = err.to_string();
        assert!(matches!(err, Error::Config(_)), "{bad}: {text}");
        assert!(
            text.contains("tract-cpu.plan_cache") && text.contains("from 1 to 64"),
            "{bad}: {text}"
        );
    }
}
