//! The latest version while a newer one is evicted: lookups, borrowed or
//! owned, do not hand out the older resident version in its place.

use super::{evicted, request, sized, spec};
use anemone_runtime::EvictionPolicy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_newer_version_is_not_replaced_by_an_older_resident_one() {
    let (m, _) = sized(2500, EvictionPolicy::Lru);
    m.load_model(spec("m", 1000).version(1)).await.unwrap();
    m.load_model(spec("m", 1000).version(2)).await.unwrap();
    // Version 1 is used after version 2, so version 2 is the least recently used.
    let mut r = request("m", 1.0);
    r.version = Some(1);
    m.infer(r).await.unwrap();
    m.load_model(spec("c", 1000)).await.unwrap();
    assert_eq!(evicted(&m), ["m"]);
    assert_eq!(m.evicted()[0].version, 2);

    // Version 1 is resident, but the latest is version 2: both lookups say so.
    assert_eq!(m.with_model("m", Some(1), |i| i.version()), Some(1));
    assert_eq!(m.with_model("m", None, |i| i.version()), None);
    assert!(m.model("m", None).is_err());
    assert_eq!(
        m.with_model("c", None, |i| i.name().to_string()).as_deref(),
        Some("c")
    );
    assert_eq!(m.with_model("nothing", None, |i| i.version()), None);

    // A request for the latest loads version 2 again and runs there.
    let response = m.infer(request("m", 3.0)).await.unwrap();
    assert_eq!(response.version, 2);
    assert_eq!(m.with_model("m", None, |i| i.version()), Some(2));
}
