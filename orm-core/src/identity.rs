//! The identity map: one weak entry per `(model, key)` the application holds, with the load it
//! first came from (its origin, for the N+1 detector: a later load that reaches the object again
//! does not make it "from" that load).

use rustc_hash::FxHashMap;
use std::any::{Any, TypeId};
use std::collections::hash_map::Entry;
use std::sync::{Arc, Weak};

use crate::model::Model;

/// Every model's map.
#[derive(Default)]
pub(crate) struct IdentityMap {
    maps: FxHashMap<TypeId, Box<dyn Any + Send>>,
}

struct Slot<M> {
    object: Weak<M>,
    origin: u64,
}

/// The identity map of one model.
pub(crate) struct ModelMap<M: Model> {
    entries: FxHashMap<M::Key, Slot<M>>,
    // Dead entries are pruned when the map reaches this size.
    prune_at: usize,
}

impl<M: Model> ModelMap<M> {
    pub(crate) fn get(&self, key: &M::Key) -> Option<Arc<M>> {
        self.entries.get(key).and_then(|e| e.object.upgrade())
    }

    /// The held object with `key`, or the one `decode` makes, held from now on (one hash probe
    /// either way). The flag says whether it is new.
    pub(crate) fn get_or_decode<E>(
        &mut self,
        key: M::Key,
        origin: u64,
        decode: impl FnOnce(M::Key) -> Result<M, E>,
    ) -> Result<(Arc<M>, bool), E> {
        self.prune();
        match self.entries.entry(key) {
            Entry::Occupied(mut held) => match held.get().object.upgrade() {
                Some(object) => Ok((object, false)),
                None => {
                    let object = Arc::new(decode(held.key().clone())?);
                    held.insert(Slot { object: Arc::downgrade(&object), origin });
                    Ok((object, true))
                }
            },
            Entry::Vacant(slot) => {
                let object = Arc::new(decode(slot.key().clone())?);
                slot.insert(Slot { object: Arc::downgrade(&object), origin });
                Ok((object, true))
            }
        }
    }

    /// Drops the entries of objects nobody holds, when the map has doubled since the last time.
    fn prune(&mut self) {
        if self.entries.len() >= self.prune_at {
            self.entries.retain(|_, e| e.object.strong_count() > 0);
            self.prune_at = (self.entries.len() * 2).max(1024);
        }
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
