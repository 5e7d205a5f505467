//! The registry's declarations, updates, sharing, release and exposition.
use super::*;

fn rendered(m: &CustomMetrics) -> String {
    let mut out = String::new();
    m.render(&mut out);
    out
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_histogram_counts_each_observation_into_its_bucket_and_renders_cumulatively() {
    let m = CustomMetrics::new();
    let f = m
        .family("latency", "seconds", MetricKind::Histogram)
        .unwrap();
    let s = m
        .series(
            &f,
            labels(&[("b", "2"), ("a", "1")]),
            Some(vec![0.1, 1.0, 2.5]),
        )
        .unwrap();
    for x in [0.0625, 1.5, 6.0, 0.09375] {
        m.observe(&s, x).unwrap();
    }
    let out = rendered(&m);
    let want = "# HELP latency seconds\n# TYPE latency histogram\n\
                latency_bucket{a=\"1\",b=\"2\",le=\"0.1\"} 2\n\
                latency_bucket{a=\"1\",b=\"2\",le=\"1\"} 2\n\
                latency_bucket{a=\"1\",b=\"2\",le=\"2.5\"} 3\n\
                latency_bucket{a=\"1\",b=\"2\",le=\"+Inf\"} 4\n\
                latency_sum{a=\"1\",b=\"2\"} 7.65625\n\
                latency_count{a=\"1\",b=\"2\"} 4\n";
    assert_eq!(out, want);
    assert!(m
        .value(&s)
        .unwrap_err()
        .0
        .contains("does not support value"));
    assert!(m.increment(&s, 1.0).is_err());
    assert!(m.set(&s, 1.0).is_err());
}

#[test]
fn counters_only_go_up_and_gauges_take_anything() {
    let m = CustomMetrics::new();
    let c = m.family("c", "a counter", MetricKind::Counter).unwrap();
    let c = m.series(&c, vec![], None).unwrap();
    m.increment(&c, 2023.0).unwrap();
    for bad in [-23.5, f64::NAN] {
        let e = m.increment(&c, bad).unwrap_err();
        assert!(e.0.contains("only goes up"), "{e}");
    }
    assert!(m.set(&c, 5.0).unwrap_err().0.contains("only a gauge"));
    assert!(m
        .observe(&c, 5.0)
        .unwrap_err()
        .0
        .contains("only a histogram"));
    assert_eq!(m.value(&c).unwrap(), 2023.0);
    let g = m.family("g", "a gauge", MetricKind::Gauge).unwrap();
    let g = m.series(&g, vec![], None).unwrap();
    m.increment(&g, 2023.0).unwrap();
    m.increment(&g, -23.5).unwrap();
    assert_eq!(m.value(&g).unwrap(), 1999.5);
    m.set(&g, 999.9).unwrap();
    assert_eq!(m.value(&g).unwrap(), 999.9);
    let out = rendered(&m);
    assert!(
        out.contains("\nc 2023\n") && out.contains("\ng 999.9\n"),
        "{out}"
    );
}

#[test]
fn same_name_and_labels_share_a_series_which_lives_as_long_as_its_family() {
    let m = CustomMetrics::new();
    let f1 = m.family("dup", "first", MetricKind::Counter).unwrap();
    let f2 = m.family("dup", "second", MetricKind::Counter).unwrap();
    let e = m.family("dup", "other", MetricKind::Gauge).unwrap_err();
    assert!(e.0.contains("already exists as a counter"), "{e}");
    let s1 = m.series(&f1, labels(&[("k", "v")]), None).unwrap();
    let s2 = m.series(&f2, labels(&[("k", "v")]), None).unwrap();
    m.increment(&s1, 7.5).unwrap();
    assert_eq!(m.value(&s2).unwrap(), 7.5);
    // Declared again (a Metric made in each request): the same series.
    let again = m.series(&f1, labels(&[("k", "v")]), None).unwrap();
    m.increment(&again, 1.0).unwrap();
    m.release_family(f1);
    assert!(rendered(&m).contains("# HELP dup first\n"));
    assert_eq!(m.value(&s2).unwrap(), 8.5);
    m.release_family(f2);
    assert_eq!(rendered(&m), "");
    assert!(m.value(&s2).unwrap_err().0.contains("was released"));
    // Declared anew: counting from 0, under the new description.
    let f3 = m.family("dup", "third", MetricKind::Counter).unwrap();
    let s3 = m.series(&f3, labels(&[("k", "v")]), None).unwrap();
    assert_eq!(m.value(&s3).unwrap(), 0.0);
    assert!(rendered(&m).contains("# HELP dup third\n"));
}

#[test]
fn bad_declarations_are_refused_with_the_rule() {
    let m = CustomMetrics::new();
    for name in ["bad-name", "1abc", "", "anemone_x", "nv_inference_count"] {
        assert!(m.family(name, "d", MetricKind::Gauge).is_err(), "{name}");
    }
    assert!(m.family("ok:colon", "d", MetricKind::Gauge).is_ok());
    let g = m.family("g", "d", MetricKind::Gauge).unwrap();
    for bad in [
        &[("bad-label", "v")][..],
        &[("__name__", "x")],
        &[("1a", "x")],
    ] {
        let e = m.series(&g, labels(bad), None).unwrap_err();
        assert!(e.0.contains("invalid label name"), "{e}");
    }
    assert!(m
        .series(&g, vec![], Some(vec![1.0]))
        .unwrap_err()
        .0
        .contains("takes no buckets"));
    let h = m.family("h", "d", MetricKind::Histogram).unwrap();
    assert!(m
        .series(&h, vec![], None)
        .unwrap_err()
        .0
        .contains("needs its bucket"));
    for bad in [
        vec![2.0, 1.0],
        vec![1.0, 1.0],
        vec![1.0, f64::INFINITY],
        vec![f64::NAN],
    ] {
        assert!(m.series(&h, vec![], Some(bad.clone())).is_err(), "{bad:?}");
    }
    assert!(m
        .series(&h, labels(&[("le", "x")]), Some(vec![]))
        .unwrap_err()
        .0
        .contains("'le'"));
    let s = m.series(&h, vec![], Some(vec![])).unwrap();
    m.observe(&s, 3.0).unwrap();
    let e = m.series(&h, vec![], Some(vec![1.0])).unwrap_err();
    assert!(e.0.contains("already has buckets"), "{e}");
    assert!(rendered(&m).contains("h_bucket{le=\"+Inf\"} 1\nh_sum 3\nh_count 1\n"));
}

#[test]
fn values_and_labels_are_written_as_prometheus_reads_them() {
    let m = CustomMetrics::new();
    let f = m
        .family("esc", "d \"q\" \\ \n x", MetricKind::Gauge)
        .unwrap();
    let cases = [
        ("nan", f64::NAN, "NaN"),
        ("inf", f64::INFINITY, "+Inf"),
        ("ninf", f64::NEG_INFINITY, "-Inf"),
        ("big", 1e300, "1e300"),
        ("small", 1.5e-7, "1.5e-7"),
        ("int", 123456789012.0, "123456789012"),
        ("frac", 0.25, "0.25"),
    ];
    for (label, value, _) in cases {
        let s = m.series(&f, labels(&[("a", label)]), None).unwrap();
        m.set(&s, value).unwrap();
    }
    let s = m
        .series(&f, labels(&[("a", "v \"q\" \\ \n x")]), None)
        .unwrap();
    m.set(&s, 1.0).unwrap();
    let out = rendered(&m);
    assert!(
        out.starts_with("# HELP esc d \"q\" \\\\ \\n x\n# TYPE esc gauge\n"),
        "{out}"
    );
    for (label, _, written) in cases {
        assert!(
            out.contains(&format!("esc{{a=\"{label}\"}} {written}\n")),
            "{out}"
        );
    }
    assert!(
        out.contains("esc{a=\"v \\\"q\\\" \\\\ \\n x\"} 1\n"),
        "{out}"
    );
}

#[test]
fn series_past_the_limit_are_refused_and_a_released_family_makes_room() {
    let m = CustomMetrics::new();
    let f = m.family("many", "d", MetricKind::Gauge).unwrap();
    for i in 0..MAX_SERIES - 1 {
        m.series(&f, labels(&[("i", &i.to_string())]), None)
            .unwrap();
    }
    let other = m.family("other", "d", MetricKind::Gauge).unwrap();
    m.series(&other, vec![], None).unwrap();
    let e = m.series(&f, labels(&[("i", "last")]), None).unwrap_err();
    assert!(e.0.contains("100000 custom metric series"), "{e}");
    // The same labels again are no new series.
    assert!(m.series(&f, labels(&[("i", "0")]), None).is_ok());
    m.release_family(other);
    assert!(m.series(&f, labels(&[("i", "last")]), None).is_ok());
}
