//! A recorded event's typed form, decoded once and shared by every reader of the same copy.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// The typed event a [`RecordedEvent`](crate::RecordedEvent) decodes to, kept after the first
/// [`DomainEvent::decode_shared`](crate::DomainEvent::decode_shared): the projections of one
/// group or rebuild read the same batch, and each decoded every conversation event again (about
/// a sixth of a rebuild's client CPU, ADR 0002).
///
/// It is a cache of `payload`, so it takes no part in equality and is empty in a new event. Code
/// that changes an event's `payload` after decoding it must [`Decoded::forget`] it.
#[derive(Default, Clone)]
pub struct Decoded(OnceLock<Option<Arc<dyn Any + Send + Sync>>>);

impl Decoded {
    /// The cached value if it is a `T`; `None` when nothing is cached, the payload did not decode,
    /// or another family's type was cached.
    pub(crate) fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let cached = self.0.get()?.as_ref()?;
        Arc::clone(cached).downcast::<T>().ok()
    }

    /// The cached value, decoding it with `decode` if nothing is cached yet. A reader that comes
    /// while another decodes waits for it instead of decoding again. A failed decoding is kept as
    /// `None`, so the caller decodes again to report the error.
    pub(crate) fn get_or_decode<T: Any + Send + Sync>(&self, decode: impl FnOnce() -> Option<T>) -> Option<Arc<T>> {
        self.0
            .get_or_init(|| decode().map(|typed| Arc::new(typed) as Arc<dyn Any + Send + Sync>));
        self.get()
    }

    /// Drops the cached value (after a change to the payload).
    pub fn forget(&mut self) {
        self.0 = OnceLock::new();
    }
}

impl PartialEq for Decoded {
    /// Always equal: a cache of the payload, which the events' equality compares.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for Decoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.0.get() {
            None => "empty",
            Some(None) => "failed",
            Some(Some(_)) => "decoded",
        };
        f.debug_tuple("Decoded").field(&state).finish()
    }
}
