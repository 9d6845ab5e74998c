//! Values shared by the nodes of one engine: clients, connection pools,
//! settings. An application gives some ([`EngineBuilder::resource`]); nodes
//! make others on first use ([`Context::shared`]), so that, say, one HTTP
//! client serves every request of every execution of an engine.
//!
//! [`EngineBuilder::resource`]: crate::EngineBuilder::resource
//! [`Context::shared`]: crate::Context::shared

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::RwLock;

/// One value per type.
#[derive(Default)]
pub(crate) struct Resources {
    values: RwLock<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resources")
            .field("count", &self.values.read().len())
            .finish()
    }
}

impl Resources {
    /// Puts `value`, replacing one of the same type.
    pub(crate) fn insert<T: Send + Sync + 'static>(&self, value: Arc<T>) {
        self.values.write().insert(TypeId::of::<T>(), value);
    }

    /// The value of type `T`, if there is one.
    pub(crate) fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let value = self.values.read().get(&TypeId::of::<T>())?.clone();
        value.downcast::<T>().ok()
    }

    /// The value of type `T`, made by `init` if there is none yet. `init`
    /// runs outside the lock (it may itself use resources); when two make
    /// one at once, the first stored wins and the other is dropped.
    pub(crate) fn get_or_init<T: Send + Sync + 'static>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        if let Some(value) = self.get::<T>() {
            return value;
        }
        let made: Arc<dyn Any + Send + Sync> = Arc::new(init());
        let stored = self
            .values
            .write()
            .entry(TypeId::of::<T>())
            .or_insert(made)
            .clone();
        match stored.downcast::<T>() {
            Ok(value) => value,
            // The map is keyed by type id, so the stored value is a `T`.
            Err(_) => unreachable!("a resource stored under another type's id"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_type_made_once() {
        let resources = Resources::default();
        assert!(resources.get::<String>().is_none());
        let mut made = 0;
        let a = resources.get_or_init(|| {
            made += 1;
            String::from("client")
        });
        let b = resources.get_or_init(|| {
            made += 1;
            String::from("another")
        });
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(made, 1);
        resources.insert(Arc::new(7u32));
        assert_eq!(*resources.get::<u32>().unwrap(), 7);
    }
}
