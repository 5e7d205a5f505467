use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

fn limit(resources: &[(&str, u64, bool)], priority: u32) -> Option<RateLimit> {
    Some(RateLimit {
        resources: resources
            .iter()
            .map(|(name, count, global)| Resource {
                name: name.to_string(),
                count: *count,
                global: *global,
            })
            .collect(),
        priority,
    })
}

/// A wake that counts its calls.
fn counter() -> (Wake, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let m = Arc::clone(&n);
    let wake: Wake = Arc::new(move || {
        m.fetch_add(1, Ordering::SeqCst);
    });
    (wake, n)
}

fn quiet() -> Wake {
    Arc::new(|| {})
}

fn granted(r: &Registration, lane: usize) -> Option<Grant> {
    match r.acquire(lane).0 {
        Acquire::Granted(g) => Some(g),
        Acquire::Wait => None,
    }
}

#[test]
fn counts_parse_as_tritons_flag_takes_them() {
    let r1: Available = "R1:4".parse().unwrap();
    assert_eq!((r1.name.as_str(), r1.count, r1.device), ("R1", 4, None));
    let r2: Available = "R2:5:1".parse().unwrap();
    assert_eq!(r2.device, Some(1));
    for bad in ["", "R1", ":4", "R1:x", "R1:4:y", "R1:4:0:9", "R1:-1"] {
        let e = bad.parse::<Available>().unwrap_err();
        assert!(e.contains("NAME:COUNT"), "{bad}: {e}");
    }
}

#[test]
fn by_default_a_resource_has_as_many_as_its_largest_user_needs() {
    let limiter = RateLimiter::new(vec![]);
    let a = limiter
        .register("a", &[limit(&[("R", 2, false)], 1)], quiet())
        .unwrap()
        .unwrap();
    let b = limiter
        .register("b", &[limit(&[("R", 3, false)], 1)], quiet())
        .unwrap()
        .unwrap();
    // 3 in all: a (2) runs; b (3) must wait for it.
    let ga = granted(&a, 0).expect("a fits");
    assert!(granted(&b, 0).is_none(), "2 + 3 > 3");
    drop(ga);
    assert!(granted(&b, 0).is_some(), "b's turn once a gave its 2 back");
    // Without b the count shrinks back to 2, and one `a` still runs.
    drop(b);
    assert!(granted(&a, 0).is_some());
}

#[test]
fn counts_given_on_the_command_line_bound_the_instances_and_refuse_what_cannot_run() {
    let given = vec!["R:1".parse().unwrap(), "G:5".parse().unwrap()];
    let limiter = RateLimiter::new(given);
    let two = limiter
        .register(
            "two",
            &[limit(&[("R", 1, false)], 1), limit(&[("R", 1, false)], 1)],
            quiet(),
        )
        .unwrap()
        .unwrap();
    let first = granted(&two, 0).unwrap();
    assert!(
        granted(&two, 1).is_none(),
        "R:1 lets one instance run at a time"
    );
    drop(first);
    assert!(granted(&two, 1).is_some());
    let e = limiter
        .register("big", &[limit(&[("R", 2, false)], 1)], quiet())
        .err()
        .unwrap();
    assert!(
        e.contains("model 'big'") && e.contains("limited to 1") && e.contains("R:2"),
        "{e}"
    );
    // A resource not given has none once any is given.
    let e = limiter
        .register("other", &[limit(&[("S", 1, true)], 1)], quiet())
        .err()
        .unwrap();
    assert!(e.contains("\"S\" is limited to 0"), "{e}");
    // A refused model leaves nothing behind: `two` still runs.
    assert!(granted(&two, 0).is_some());
}

#[test]
fn a_resource_cannot_be_global_in_one_group_and_per_device_in_another() {
    let limiter = RateLimiter::new(vec![]);
    let _a = limiter
        .register("a", &[limit(&[("R", 1, true)], 1)], quiet())
        .unwrap();
    let e = limiter
        .register("b", &[limit(&[("R", 1, false)], 1)], quiet())
        .err()
        .unwrap();
    assert!(
        e.contains("\"R\" is global in model 'a' and per device in model 'b'"),
        "{e}"
    );
}

#[test]
fn lanes_without_a_limit_are_never_held_and_models_without_one_do_not_register() {
    let limiter = RateLimiter::new(vec![]);
    assert!(limiter
        .register("free", &[None, None], quiet())
        .unwrap()
        .is_none());
    let mixed = limiter
        .register("mixed", &[limit(&[("R", 1, false)], 1), None], quiet())
        .unwrap()
        .unwrap();
    let _held = granted(&mixed, 0).unwrap();
    assert!(granted(&mixed, 0).is_none());
    assert!(granted(&mixed, 1).is_some(), "lane 1 has no rate_limiter");
}

#[test]
fn the_waiting_instance_with_the_fewest_weighted_executions_goes_first_and_is_not_overtaken() {
    let limiter = RateLimiter::new(vec![]);
    let (wake_a, woken_a) = counter();
    let (wake_b, woken_b) = counter();
    let a = limiter
        .register("a", &[limit(&[("R", 1, true)], 1)], wake_a)
        .unwrap()
        .unwrap();
    let b = limiter
        .register("b", &[limit(&[("R", 1, true)], 2)], wake_b)
        .unwrap()
        .unwrap();
    // Priority 1 against 2 under constant demand: each waits for the
    // other, and `a` gets two turns for each of `b`'s.
    let mut turns = Vec::new();
    let mut holding = granted(&a, 0).map(|g| ("a", g));
    for _ in 0..12 {
        // Both ask; the holder gives back; the one given the turn takes it.
        assert!(granted(&a, 0).is_none() && granted(&b, 0).is_none());
        let (who, grant) = holding.take().unwrap();
        turns.push(who);
        drop(grant);
        holding = match (granted(&a, 0), granted(&b, 0)) {
            (Some(g), None) => Some(("a", g)),
            (None, Some(g)) => Some(("b", g)),
            _ => panic!("exactly one is given the resource"),
        };
    }
    let a_turns = turns.iter().filter(|w| **w == "a").count();
    assert_eq!(a_turns, 8, "turns: {turns:?}");
    assert!(woken_a.load(Ordering::SeqCst) > 0 && woken_b.load(Ordering::SeqCst) > 0);
    drop(holding);

    // Strict order: `big` (fewest executions) waits for 2 while `small`
    // needs 1 and 1 is free, and `small` still waits behind it.
    let limiter = RateLimiter::new(vec!["R:2".parse().unwrap()]);
    let holder = limiter
        .register("holder", &[limit(&[("R", 1, false)], 1)], quiet())
        .unwrap()
        .unwrap();
    let held = granted(&holder, 0).unwrap();
    let big = limiter
        .register("big", &[limit(&[("R", 2, false)], 1)], quiet())
        .unwrap()
        .unwrap();
    let small = limiter
        .register("small", &[limit(&[("R", 1, false)], 1)], quiet())
        .unwrap()
        .unwrap();
    assert!(granted(&big, 0).is_none(), "1 of 2 is held");
    assert!(granted(&small, 0).is_none(), "small does not overtake big");
    drop(held);
    assert!(granted(&big, 0).is_some(), "big's turn came");
}

#[test]
fn a_withdrawn_instance_leaves_the_line_and_gives_back_what_it_was_given() {
    let limiter = RateLimiter::new(vec![]);
    let (wake_b, woken_b) = counter();
    let a = limiter
        .register("a", &[limit(&[("R", 1, false)], 1)], quiet())
        .unwrap()
        .unwrap();
    let b = limiter
        .register("b", &[limit(&[("R", 1, false)], 1)], wake_b)
        .unwrap()
        .unwrap();
    let held = granted(&a, 0).unwrap();
    // `a` asks again (its queue has more), then its queue empties.
    assert!(granted(&a, 0).is_none());
    assert!(a.withdraw(0).is_empty(), "nothing was given to a yet");
    assert!(granted(&b, 0).is_none());
    drop(held);
    // b was next (a left the line) and was woken.
    assert_eq!(woken_b.load(Ordering::SeqCst), 1);
    let gb = granted(&b, 0).unwrap();
    // a waits, is given R when b is done, then withdraws: R goes back.
    assert!(granted(&a, 0).is_none());
    drop(gb);
    let wakes = a.withdraw(0);
    assert!(wakes.is_empty());
    assert!(granted(&b, 0).is_some(), "R went back when a withdrew");
}

#[test]
fn a_model_unloaded_while_given_resources_gives_them_back() {
    let limiter = RateLimiter::new(vec!["R:1".parse().unwrap()]);
    let a = limiter
        .register("a", &[limit(&[("R", 1, false)], 1)], quiet())
        .unwrap()
        .unwrap();
    let b = limiter
        .register("b", &[limit(&[("R", 1, false)], 1)], quiet())
        .unwrap()
        .unwrap();
    let running = granted(&b, 0).unwrap();
    assert!(granted(&a, 0).is_none());
    drop(running); // gives R to a, which has not taken it yet
    drop(a); // unloaded
    assert!(granted(&b, 0).is_some(), "a's grant went back when it left");
    // A running call outliving its model still gives its resources back.
    let c = limiter
        .register("c", &[limit(&[("R", 1, false)], 1)], quiet())
        .unwrap()
        .unwrap();
    let b_running = granted(&b, 0).unwrap();
    drop(b);
    assert!(granted(&c, 0).is_none(), "b's call still holds R");
    drop(b_running);
    assert!(granted(&c, 0).is_some());
}
