//! Tests of `settings.rs`: sampling, overrides, updates, and Triton's
//! trace-file mode.

use super::*;

fn on(rate: u32, count: i32) -> TraceSettings {
    TraceSettings::new(&TracingOptions {
        endpoint: Some("http://collector:4317".into()),
        level: TraceLevel::TIMESTAMPS,
        rate,
        count,
        follow_context: false,
        ..Default::default()
    })
}

#[test]
fn with_a_trace_file_the_settings_are_tritons_own_mode() {
    let dir = crate::test_dir::TempDir::new("trace-settings-file");
    let file =
        std::sync::Arc::new(crate::telemetry::TraceFile::new(&dir.join("t.json"), 0).unwrap());
    let s = TraceSettings::new(&TracingOptions {
        level: TraceLevel::TIMESTAMPS,
        trace_file: Some(file.clone()),
        ..Default::default()
    });
    assert!(s.exporting());
    let shown = |s: &TraceSettings| -> Vec<(&str, Vec<String>)> { s.view(None) };
    let names: Vec<&str> = shown(&s).iter().map(|(n, _)| *n).collect();
    // Triton 2.51's answer in its triton mode, in its order.
    assert_eq!(
        names,
        [
            "trace_level",
            "trace_rate",
            "trace_count",
            "log_frequency",
            "trace_file",
            "trace_mode"
        ]
    );
    assert_eq!(shown(&s)[5].1, ["triton"]);
    assert_eq!(shown(&s)[4].1, [dir.join("t.json").display().to_string()]);
    set(&s, None, "log_frequency", Some(&["50"])).unwrap();
    assert_eq!(file.log_frequency(), 50);
    assert_eq!(shown(&s)[3].1, ["50"]);
    // All or nothing: a bad value beside it changes neither.
    assert!(s
        .update(
            None,
            &[
                ("log_frequency".into(), Some(vec!["7".into()])),
                ("trace_rate".into(), Some(vec!["often".into()])),
            ]
        )
        .is_err());
    assert_eq!(file.log_frequency(), 50);
    let e = set(&s, Some("add"), "log_frequency", Some(&["5"])).unwrap_err();
    assert!(e.message.contains("server's trace file"), "{}", e.message);
    let e = set(&s, None, "trace_file", Some(&["/tmp/x"])).unwrap_err();
    assert!(e.message.contains("can not be updated"), "{}", e.message);
    // Without a file, log_frequency is refused, naming Triton's files.
    let e = set(&on(1, -1), None, "log_frequency", Some(&["5"])).unwrap_err();
    assert!(e.message.contains("Triton's trace files"), "{}", e.message);
}

#[test]
fn tritons_rule_traces_a_context_whatever_the_rate_and_count() {
    let s = TraceSettings::new(&TracingOptions {
        endpoint: Some("http://collector:4318/v1/traces".into()),
        level: TraceLevel::TIMESTAMPS,
        rate: 0,
        count: 1,
        follow_context: true,
        ..Default::default()
    });
    // Rate 0: nothing by the rate; a context, every time, the count kept.
    assert!((0..5).all(|_| !s.sample("m")));
    assert!((0..5).all(|_| s.sample_context("m")));
    assert_eq!(s.view(None)[2], ("trace_count", vec!["1".to_string()]));
    // A model at level OFF is not traced, context or not.
    set(&s, Some("quiet"), "trace_level", Some(&["OFF"])).unwrap();
    assert!(!s.sample_context("quiet"));
    // Without the rule, a context selects nothing.
    assert!(!on(1, -1).sample_context("m"));
}

fn set(
    s: &TraceSettings,
    model: Option<&str>,
    name: &str,
    value: Option<&[&str]>,
) -> Result<(), ApiError> {
    let value = value.map(|v| v.iter().map(|s| s.to_string()).collect());
    s.update(model, &[(name.to_string(), value)])
}

fn traced(s: &TraceSettings, model: &str, n: usize) -> Vec<bool> {
    (0..n).map(|_| s.sample(model)).collect()
}

#[test]
fn the_rate_traces_one_request_in_n_and_the_count_runs_out() {
    let s = on(3, 2);
    assert_eq!(
        traced(&s, "m", 9),
        [false, false, true, false, false, true, false, false, false]
    );
    let every = on(1, -1);
    assert!(traced(&every, "m", 5).iter().all(|t| *t));
}

#[test]
fn a_model_overrides_fields_and_follows_the_global_rest() {
    let s = on(1, -1);
    set(&s, Some("quiet"), "trace_level", Some(&["OFF"])).unwrap();
    set(&s, Some("sparse"), "trace_rate", Some(&["2"])).unwrap();
    assert_eq!(traced(&s, "quiet", 3), [false; 3]);
    assert_eq!(traced(&s, "sparse", 4), [false, true, false, true]);
    assert_eq!(traced(&s, "other", 2), [true, true]);
    let view: HashMap<_, _> = s.view(Some("sparse")).into_iter().collect();
    assert_eq!(view["trace_rate"], ["2"]);
    assert_eq!(view["trace_level"], ["TIMESTAMPS"]);
    // The global level changes what a model that did not set its own follows.
    set(&s, None, "trace_level", Some(&["OFF"])).unwrap();
    assert_eq!(traced(&s, "sparse", 2), [false, false]);
    // Clearing a model's field returns it to the global value.
    set(&s, Some("quiet"), "trace_level", None).unwrap();
    assert!(s
        .view(Some("quiet"))
        .contains(&("trace_level", vec!["OFF".to_string()])));
    set(&s, None, "trace_level", None).unwrap();
    assert_eq!(
        traced(&s, "other", 1),
        [true],
        "cleared to the start-up level"
    );
}

#[test]
fn the_switch_and_level_off_trace_nothing() {
    let s = on(1, -1);
    s.set_enabled(false);
    assert!(!s.sample("m"));
    s.set_enabled(true);
    assert!(s.sample("m"));
    let off = TraceSettings::default();
    assert!(!off.sample("m"));
}

#[test]
fn the_tracing_gate_off_traces_nothing() {
    let gates = std::sync::Arc::new(anemone_runtime::gates::FeatureGates::default());
    let s = on(1, -1).with_gates(gates.clone());
    assert!(s.sample("m") && s.enabled());
    gates.set("tracing", false).unwrap();
    assert!(!s.sample("m") && !s.enabled());
    gates.set("tracing", true).unwrap();
    assert!(s.sample("m"));
}

#[test]
fn bad_updates_say_what_is_wrong_and_change_nothing() {
    let s = on(1, -1);
    let e = |name: &str, v: &[&str]| set(&s, None, name, Some(v)).unwrap_err().message;
    assert!(e("trace_rate", &["0"]).contains("from 1 to"));
    assert!(e("trace_rate", &["fast"]).contains("'fast'"));
    assert!(e("trace_count", &["-2"]).contains("from -1"));
    assert!(e("trace_level", &["OFF", "TIMESTAMPS"]).contains("alone"));
    assert!(e("trace_level", &["LOUD"]).contains("unknown trace level 'LOUD'"));
    assert!(e("trace_file", &["/tmp/x"]).contains("can not be updated"));
    assert!(e("tracing", &["1"]).contains("unknown trace setting 'tracing'"));
    let both = s.update(
        None,
        &[
            ("trace_rate".into(), Some(vec!["5".into()])),
            ("trace_count".into(), Some(vec!["x".into()])),
        ],
    );
    assert!(both.is_err());
    assert!(s
        .view(None)
        .contains(&("trace_rate", vec!["1".to_string()])));
    let off = TraceSettings::default();
    let refused = set(&off, None, "trace_level", Some(&["TIMESTAMPS"])).unwrap_err();
    assert!(
        refused.message.contains("--otlp-endpoint"),
        "{}",
        refused.message
    );
}
