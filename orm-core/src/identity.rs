//! The identity map: one weak entry per `(model, key)` the application holds, with the load it
//! first came from (its origin, for the N+1 detector: a later load that reaches the object again
//! does not make it "from" that load).

use rustc_hash::FxHashMap;
use std::any::{Any, TypeId};
use std::sync::{Arc, Weak};

use crate::model::Model;

/// Every model's map.
#[derive(Default)]
pub(crate) struct IdentityMap {
    maps: FxHashMap<TypeId, Box<dyn Any + Send>>,
}

struct Entry<M> {
    object: Weak<M>,
    origin: u64,
}

/// The identity map of one model.
pub(crate) struct ModelMap<M: Model> {
    entries: FxHashMap<M::Key, Entry<M>>,
    // Dead entries are pruned when the map reaches this size.
    prune_at: usize,
}

impl<M: Model> ModelMap<M> {
    pub(crate) fn get(&self, key: &M::Key) -> Option<Arc<M>> {
        self.entries.get(key).and_then(|e| e.object.upgrade())
    }

    pub(crate) fn insert(&mut self, key: M::Key, object: &Arc<M>, origin: u64) {
        if self.entries.len() >= self.prune_at {
            self.entries.retain(|_, e| e.object.strong_count() > 0);
            self.prune_at = (self.entries.len() * 2).max(1024);
        }
        self.entries.insert(key, Entry { object: Arc::downgrade(object), origin });
    }

    /// The load the object with `key` first came from.
    pub(crate) fn origin(&self, key: &M::Key) -> Option<u64> {
        self.entries.get(key).filter(|e| e.object.strong_count() > 0).map(|e| e.origin)
    }
}

impl IdentityMap {
    pub(crate) fn model<M: Model>(&mut self) -> &mut ModelMap<M> {
        self.maps
            .entry(TypeId::of::<M>())
            .or_insert_with(|| {
                Box::new(ModelMap::<M> { entries: FxHashMap::default(), prune_at: 1024 })
            })
            .downcast_mut::<ModelMap<M>>()
            .expect("identity map entries are keyed by their model's TypeId")
    }

    pub(crate) fn get<M: Model>(&mut self, key: &M::Key) -> Option<Arc<M>> {
        self.model::<M>().get(key)
    }
}
