//! What `serve` prints on stdout while its repository loads: a line for
//! loads that take a while, then one table of every model (name, version,
//! state, backend, load time), as Triton does.

use crate::output::{printable, say, table};
use anemone_server::state::AppState;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A load still running after this long is reported, and again every
/// [`PROGRESS_EVERY`] after that.
pub const SLOW_LOAD: Duration = Duration::from_secs(2);
/// How often a slow load is reported again.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Waits for the start-up loads, printing progress, then prints the table.
pub async fn report(state: Arc<AppState>) {
    let start = Instant::now();
    let mut next_progress = SLOW_LOAD;
    while !state.repository.startup_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let elapsed = start.elapsed();
        if elapsed < next_progress {
            continue;
        }
        next_progress = elapsed + PROGRESS_EVERY;
        let loading: Vec<String> = state
            .repository
            .index()
            .into_iter()
            .filter(|r| r.state == "LOADING")
            .map(|r| printable(&r.name))
            .collect();
        if !loading.is_empty() {
            say(format_args!(
                "loading {} ({} s so far)\n",
                loading.join(", "),
                elapsed.as_secs()
            ));
        }
    }
    say(format_args!("{}", models_table(&state)));
    if state.manager.memory().1.is_some() {
        say(format_args!(
            "{}\n",
            crate::models::budget_line(&state.manager)
        ));
    }
}

/// What failed to load at start-up, for `--exit-on-error`: "model 'a'
/// failed to load: reason; ..." (`None` when every model loaded).
pub fn failed_models(state: &AppState) -> Option<String> {
    let failed: Vec<String> = state
        .repository
        .index()
        .into_iter()
        .filter(|r| r.state == "UNAVAILABLE")
        .map(|r| {
            format!(
                "model '{}' failed to load: {}",
                printable(&r.name),
                printable(&r.reason)
            )
        })
        .collect();
    match failed.len() {
        0 => None,
        _ => Some(failed.join("; ")),
    }
}

/// The table of every model the repository knows.
pub fn models_table(state: &AppState) -> String {
    let mut rows = vec![vec![
        "MODEL".to_string(),
        "VERSION".into(),
        "STATE".into(),
        "BACKEND".into(),
        "LOAD TIME".into(),
    ]];
    let index = state.repository.index();
    for row in &index {
        let instance = state.manager.model(&row.name, None).ok();
        let state_text = match row.state.as_str() {
            "" => "UNLOADED".to_string(),
            "UNAVAILABLE" => format!("UNAVAILABLE: {}", clip(&printable(&row.reason), 160)),
            s => s.to_string(),
        };
        rows.push(vec![
            printable(&row.name),
            if row.version.is_empty() {
                "-".into()
            } else {
                row.version.clone()
            },
            state_text,
            match &instance {
                Some(m) => m.backend().to_string(),
                // A ready ensemble has no instance of its own.
                None if state.manager.ensemble(&row.name).is_some() => "ensemble".into(),
                None => "-".into(),
            },
            instance.as_ref().map_or("-".into(), |m| {
                format!("{:.0} ms", m.load_time().as_secs_f64() * 1e3)
            }),
        ]);
    }
    if index.is_empty() {
        return match state.repository.startup_scan_error() {
            Some(e) => format!("no models loaded: {e}\n"),
            None => "no models in the repository\n".into(),
        };
    }
    table(&rows, "")
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}
