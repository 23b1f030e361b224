//! Property-based robustness: the override grammar and composition, and the readers of
//! files we write (images, ONNX models and their metadata, run dirs), fed generated and
//! damaged inputs. Each must return an error, never panic; a parsed override renders back to
//! text that parses to the same value. Case counts are bounded so this runs in seconds.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::Path;

use defectkit_core::config::overrides::{parse_override, OverrideValue};
use defectkit_core::config::Loader;
use defectkit_core::onnx::{self, testing::TinyModel, ModelKind, ModelMetadata};
use proptest::prelude::*;

/// Characters that matter to the grammar, plus a few it refuses.
const GRAMMAR_CHARS: &[char] = &[
    'a', 'b', 'x', 'Z', '_', '0', '1', '9', '.', '-', '+', 'e', '$', '{', '}', '[', ']', '(', ')',
    ',', ':', '=', ' ', '\t', '\\', '\'', '"', '~', '@', '/', '%', '*', '?', '|', '#', 'é',
];

fn grammar_text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(GRAMMAR_CHARS), 0..max)
        .prop_map(|v| v.into_iter().collect())
}

/// Literal values written the way users write them: words, numbers, quoted strings (with
/// escapes), escaped characters, interpolations, lists and dicts, nested.
fn literal_text() -> impl Strategy<Value = String> {
    value_text_with(false)
}

/// [`literal_text`] plus function calls (`str(..)`, `sort(..)`).
fn value_text() -> impl Strategy<Value = String> {
    value_text_with(true)
}

fn value_text_with(functions: bool) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        "[a-z_][a-z0-9_-]{0,6}",
        (-1000i64..1000).prop_map(|i| i.to_string()),
        (-1e6f64..1e6).prop_map(|f| format!("{f}")),
        Just("null".to_string()),
        Just("TRUE".to_string()),
        Just("inf".to_string()),
        "[a-z ,:=\\\\']{0,6}"
            .prop_map(|s| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))),
        "[a-z]{1,3}".prop_map(|s| format!(r"{s}\,{s}\ \:x")),
        "[a-z]{1,4}".prop_map(|s| format!("${{{s}}}")),
    ];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        let list = proptest::collection::vec(inner.clone(), 0..4)
            .prop_map(|v| format!("[{}]", v.join(", ")));
        let dict = proptest::collection::vec(("[a-z]{1,3}|[0-9]{1,2}|true", inner.clone()), 0..3)
            .prop_map(|v| {
                let items: Vec<String> = v.into_iter().map(|(k, x)| format!("{k}: {x}")).collect();
                format!("{{{}}}", items.join(", "))
            });
        if functions {
            prop_oneof![
                list,
                dict,
                inner.clone().prop_map(|x| format!("str({x})")),
                proptest::collection::vec(inner, 1..3)
                    .prop_map(|v| format!("sort({})", v.join(","))),
            ]
            .boxed()
        } else {
            prop_oneof![list, dict].boxed()
        }
    })
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any text is parsed or refused with an error that quotes it; nothing panics.
    #[test]
    fn any_override_text_parses_or_errors(key in "[+~]{0,2}[a-z.]{0,6}", value in grammar_text(24)) {
        let text = format!("{key}={value}");
        if let Err(e) = parse_override(&text) {
            prop_assert!(e.to_string().contains(&text), "{e}");
        }
        let _ = parse_override(&value);
    }

    /// parse → render → parse gives the same value (rendered the same way).
    #[test]
    /// (Function results are left out: Hydra writes a string from `str(1)` back as `1`.)
    fn parsed_values_round_trip_through_their_rendering(value in literal_text()) {
        let text = format!("x={value}");
        if let Ok(o) = parse_override(&text) {
            if let Some(OverrideValue::Element(e)) = &o.value {
                let again = parse_override(&format!("x={}", e.render()))
                    .map_err(|err| TestCaseError::fail(format!("{text} rendered as {}: {err}", e.render())))?;
                let Some(OverrideValue::Element(e2)) = &again.value else {
                    return Err(TestCaseError::fail(format!("{text}: re-parsed as a sweep")));
                };
                prop_assert_eq!(e.render(), e2.render(), "{}", text);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Composition of the real conf tree with generated overrides errors or succeeds.
    #[test]
    fn composition_never_panics(
        keys in proptest::collection::vec(prop_oneof![
            Just("trainer.lr"), Just("model"), Just("+x"), Just("~logger"), Just("data"),
            Just("++trainer.extra"), Just("model.width"), Just("hydra.run.dir"),
        ], 1..4),
        values in proptest::collection::vec(value_text(), 1..4),
    ) {
        let loader = Loader::new(&common::repo_root().join("conf"), "config", "fuzz").unwrap();
        let overrides: Vec<String> = keys
            .iter()
            .zip(values.iter().cycle())
            .map(|(k, v)| if k.starts_with('~') { k.to_string() } else { format!("{k}={v}") })
            .collect();
        if let Ok(c) = loader.compose(&overrides) {
            let _ = loader.typed(&c);
        }
        let _ = loader.compose_sweep(&overrides);
    }
}

/// A valid file's bytes, then every damage proptest picks: truncation, flipped bytes, junk.
fn damaged(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let n = valid.len();
    let v1 = valid.clone();
    let v2 = valid;
    prop_oneof![
        (0..n).prop_map(move |cut| v1[..cut].to_vec()),
        proptest::collection::vec((0..n, any::<u8>()), 1..8).prop_map(move |flips| {
            let mut b = v2.clone();
            for (i, x) in flips {
                b[i] ^= x | 1;
            }
            b
        }),
        proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

fn tiny_model_bytes() -> Vec<u8> {
    let tiny = TinyModel::classifier(ModelKind::CnnScratch, 8, &["a", "b"], 4);
    onnx::Message::write_to_bytes(&tiny.model).unwrap()
}

fn png_bytes() -> Vec<u8> {
    let img = image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 9, y as u8 * 5, 77]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    /// A damaged ONNX file fails to read or to yield valid metadata; it never panics, and a
    /// read that fails names the file.
    #[test]
    fn damaged_onnx_files_are_refused(bytes in damaged(tiny_model_bytes())) {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "m.onnx", &bytes);
        match onnx::read_model(&p) {
            Err(e) => prop_assert!(e.to_string().contains("m.onnx"), "{e}"),
            Ok(m) => {
                if let Some(json) = onnx::metadata_prop(&m, onnx::METADATA_KEY) {
                    let _ = ModelMetadata::from_json(json);
                }
            }
        }
    }

    /// Damaged metadata JSON is refused, never trusted half-read.
    #[test]
    fn damaged_metadata_json_is_refused(cut in 0usize..2000, flip in any::<u8>()) {
        let tiny = TinyModel::classifier(ModelKind::CnnScratch, 8, &["a"], 4);
        let json = tiny.metadata.to_json();
        let mut bytes = json.into_bytes();
        let cut = cut.min(bytes.len());
        if cut < bytes.len() {
            bytes[cut] ^= flip | 1;
        }
        if let Ok(text) = String::from_utf8(bytes) {
            if let Ok(meta) = ModelMetadata::from_json(&text) {
                prop_assert!(meta.validate().is_ok());
            }
        }
    }

    /// A damaged image decodes or fails with an error naming it.
    #[test]
    fn damaged_images_are_refused(bytes in damaged(png_bytes())) {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "img.png", &bytes);
        if let Err(e) = defectkit_core::data::image_io::decode(&p) {
            prop_assert!(e.to_string().contains("img.png"), "{e}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// A run dir whose saved config is damaged is refused naming the file.
    #[test]
    fn damaged_run_dirs_are_refused(cut in 0usize..4000, junk in grammar_text(12)) {
        let loader = Loader::new(&common::repo_root().join("conf"), "config", "fuzz").unwrap();
        let mut composed = loader.compose(&[]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let overrides = vec![format!("hydra.run.dir={}", run.display())];
        composed = loader.compose(&overrides).unwrap_or(composed);
        let made = loader.create_run_dir(&mut composed).unwrap();
        let cfg = made.path.join(".hydra/config.yaml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        let cut = cut.min(text.len());
        let cut = (0..=cut).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        std::fs::write(&cfg, format!("{}{junk}", &text[..cut])).unwrap();
        if let Err(e) = defectkit_core::run::read_run_config(&made.path) {
            let msg = format!("{e:#}");
            prop_assert!(msg.contains("config.yaml") || msg.contains(".hydra"), "{msg}");
        }
    }
}
