use std::path::PathBuf;
use std::sync::Arc;

use maxi::serde_json::json;

use super::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/imagenet")
}

/// `file, label` of the 20 bundled photos.
fn labelled_photos() -> Vec<(PathBuf, usize)> {
    let text = std::fs::read_to_string(fixtures().join("foolbox20/labels.csv")).expect("labels");
    text.lines()
        .skip(1)
        .map(|l| {
            let mut parts = l.split(',');
            let file = parts.next().expect("file");
            let label = parts.next().expect("label").parse().expect("number");
            (fixtures().join("foolbox20").join(file), label)
        })
        .collect()
}

#[test]
fn resize_keeps_the_aspect_ratio_and_crop_takes_the_centre() {
    let wide = DynamicImage::new_rgb8(1024, 683);
    let opts = PhotoOptions {
        resize: Some(256),
        crop: None,
    };
    assert_eq!(
        opts.apply(wide.clone(), "x").expect("resize").dimensions(),
        (383, 256)
    );
    let both = PhotoOptions {
        resize: Some(256),
        crop: Some(224),
    };
    assert_eq!(
        both.apply(wide, "x").expect("crop").dimensions(),
        (224, 224)
    );
    // a 5×3 image, pixel value 10·x + y: the centre 3×3 starts at column 1
    let img = image::RgbImage::from_fn(5, 3, |x, y| image::Rgb([(10 * x + y) as u8, 0, 0]));
    let crop = PhotoOptions {
        resize: None,
        crop: Some(3),
    }
    .apply(DynamicImage::ImageRgb8(img), "x")
    .expect("crop")
    .to_rgb8();
    assert_eq!(crop.get_pixel(0, 0).0[0], 10);
    assert_eq!(crop.get_pixel(2, 2).0[0], 32);
    let e = PhotoOptions {
        resize: None,
        crop: Some(4),
    }
    .apply(DynamicImage::new_rgb8(5, 3), "x.png")
    .expect_err("too large");
    assert!(
        e.message.contains("cannot crop 4×4 from a 5×3 image"),
        "{e}"
    );
    let mut o = PhotoOptions::default();
    for bad in [json!(0), json!(5000), json!("256"), json!(2.5)] {
        let e = o.set("resize", &bad, "c.toml").expect_err("accepted");
        assert!(e.message.contains("`resize` in [input] of c.toml"), "{e}");
    }
    o.set("crop", &json!(224), "c.toml").expect("valid");
    assert_eq!(o.crop, Some(224));
}

#[test]
fn squeezenet_through_the_preprocess_chain_classifies_the_bundled_photos() {
    // The fixture README: resize 256 + centre crop 224 gives top-1 14/20 and top-5 17/20.
    let backend = maxi::OnnxModel::with_output(
        fixtures().join("squeezenet1.1_fp32.onnx"),
        2,
        None,
        None,
        true,
    )
    .expect("SqueezeNet");
    let mut table = json!({"preprocess": [
        {"reorder": [2, 1, 0]}, {"mean": [104.0, 117.0, 123.0]}, {"layout": "hwc_to_chw"}
    ]});
    let spec = maxi_adapters::AdapterSpec::take_from(table.as_object_mut().expect("table"))
        .expect("valid chain");
    let model = spec.wrap(Arc::new(backend)).expect("fits the model");
    let shape = model.input_shape().expect("shape");
    assert_eq!(shape, vec![224, 224, 3]);
    let opts = PhotoOptions {
        resize: Some(256),
        crop: Some(224),
    };
    let (mut top1, mut top5) = (0, 0);
    for (path, label) in labelled_photos() {
        let x = load(&path, Some(&shape), [0.0, 255.0], &opts).expect("photo");
        let (class, scores) = maxi::predict_class(model.as_ref(), x.view()).expect("predict");
        let above = scores.iter().filter(|s| **s > scores[label]).count();
        top1 += usize::from(class == label);
        top5 += usize::from(above < 5);
        if path.ends_with("imagenet_00_243.jpg") {
            assert_eq!(class, 243, "the bull mastiff");
        }
    }
    assert_eq!((top1, top5), (14, 17));
}
