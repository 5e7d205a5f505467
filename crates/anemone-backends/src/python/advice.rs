//! What a failed model.py's message tells its user to do next.

/// What to change after model.py failed with `error`: a module it imports
/// is not installed where `python` looks, or numpy is there but does not
/// import (the model.py is fine either way), or else `otherwise`.
pub(crate) fn what_to_fix(error: &str, python: &std::path::Path, otherwise: &str) -> String {
    let missing = error
        .split("No module named '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .filter(|module| !module.is_empty());
    match missing {
        Some(module) => {
            let top = module.split('.').next().unwrap_or(module);
            format!(
                "install the package that provides '{top}' for the Python that runs this model \
                 ({python}: `{python} -m pip install <package>`), or point `anemone serve \
                 --python` (ANEMONE_PYTHON), or the model's EXECUTION_ENV_PATH, at an environment \
                 that has it",
                python = python.display()
            )
        }
        // numpy there but not importable (built for another Python or
        // another numpy ABI): the backend's probe finds numpy without
        // importing it, so this is where a broken one shows.
        None if error.contains("ImportError") && error.contains("numpy") => format!(
            "the Python that runs this model cannot import numpy: reinstall it there \
             (`{python} -m pip install --force-reinstall numpy`), or point `anemone serve \
             --python` (ANEMONE_PYTHON), or the model's EXECUTION_ENV_PATH, at an environment \
             whose numpy imports",
            python = python.display()
        ),
        None => otherwise.to_string(),
    }
}

/// Points at the log for a traceback.
pub(crate) fn traceback_hint(model: &str, traceback: Option<&str>) -> String {
    match traceback {
        Some(t) if !t.is_empty() => {
            tracing::error!(model = %model, "{}", t.trim_end());
            " (the traceback is in the log, under the model's name)".into()
        }
        _ => String::new(),
    }
}
