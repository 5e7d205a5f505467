//! The backend side of the tests' engine doubles: a double says its name
//! and how it loads ([`DoubleLoad`]); [`Double`] makes it a backend that is
//! always available, takes any model file, and is a portable CPU backend.

use anemone_core::{Backend, LoadOptions, LoadedModel, ModelSource, Probe, Support};

/// What a test double's backend does of its own.
pub trait DoubleLoad: Send + Sync + 'static {
    /// The backend's name.
    const NAME: &'static str;
    /// Loads an engine (the load's settings in `options`).
    fn load(&self, options: &LoadOptions) -> anemone_core::Result<Box<dyn LoadedModel>>;
}

/// A [`DoubleLoad`] as a backend.
pub struct Double<T>(pub T);

impl<T: DoubleLoad> Backend for Double<T> {
    fn name(&self) -> &'static str {
        T::NAME
    }
    fn probe(&self) -> Probe {
        Probe::Available {
            detail: "test double".into(),
        }
    }
    fn supports(&self, _: &ModelSource) -> Support {
        Support::Yes
    }
    fn load(
        &self,
        _: &ModelSource,
        options: &LoadOptions,
    ) -> anemone_core::Result<Box<dyn LoadedModel>> {
        self.0.load(options)
    }
}
