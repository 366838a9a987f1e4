//! The identity map: one weak entry per `(model, key)` the application holds, with the load it
//! first came from (its origin, for the N+1 detector: a later load that reaches the object again
//! does not make it "from" that load).

use rustc_hash::FxHashMap;
use std::any::{Any, TypeId};
use std::collections::hash_map::Entry;
use std::sync::{Arc, Weak};

use crate::backend::SqlKey;
use crate::model::Model;

/// A load's number, for the N+1 detector (32 bits keep an identity entry at 16 bytes for 32-bit
/// keys: the map is probed once per decoded row).
pub(crate) type Origin = u32;

/// Where [`ModelMap::get_or_decode`] found its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// Decoded from this row.
    New,
    /// Already reached by the same load.
    ThisLoad,
    /// Held from an earlier load.
    Earlier,
    /// Already the root of a row of this very statement: two rows with one primary key.
    Repeated,
}

/// What a load does with a held object its rows reach again (see [`ModelMap::get_or_decode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// Keep it if the row is unchanged ([`Model::same_row`]); a changed row makes a new object.
    Changed,
    /// Make a new object from every row (`populate_existing`).
    All,
}

/// Every model's map.
#[derive(Default)]
pub(crate) struct IdentityMap {
    /// By model: a handful, looked up once per decoded object (a scan beats hashing here).
    maps: Vec<(TypeId, Box<dyn AnyMap>)>,
    /// The last statement number given out (see [`IdentityMap::next_statement`]).
    statements: Statement,
}

/// A model's map, type-erased.
trait AnyMap: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn prune(&mut self);
    fn prune_dead(&mut self);
    fn forget_roots(&mut self);
    fn forget_since(&mut self, origin: Origin);
    fn is_empty(&self) -> bool;
}

impl<M: Model> AnyMap for ModelMap<M> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn prune(&mut self) {
        ModelMap::prune(self);
    }

    fn prune_dead(&mut self) {
        ModelMap::prune_dead(self);
    }

    fn forget_roots(&mut self) {
        let dense = self.dense.iter_mut().flatten();
        for slot in dense.chain(self.sparse.values_mut()) {
            slot.root_of = 0;
        }
    }

    fn forget_since(&mut self, origin: Origin) {
        for entry in &mut self.dense {
            if entry.as_ref().is_some_and(|slot| slot.origin > origin) {
                *entry = None;
            }
        }
        self.sparse.retain(|_, slot| slot.origin <= origin);
        self.prune_dead();
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

struct Slot<M> {
    object: Weak<M>,
    origin: Origin,
    /// The last statement whose root rows reached it (see [`Root`]); fits the slot's padding.
    root_of: Statement,
}

/// A statement's number in the session, for telling two root rows of one statement apart.
pub(crate) type Statement = u32;

/// Whether the row being decoded is the root of a statement whose rows cannot repeat a root:
/// its statement's number, to catch a second row with the same key.
pub(crate) type Root = Option<Statement>;

impl<M> Slot<M> {
    /// An entry for an object not decoded yet (or no longer held).
    fn dead() -> Self {
        Slot { object: Weak::new(), origin: 0, root_of: 0 }
    }

    fn new(object: &Arc<M>, origin: Origin, root: Root) -> Self {
        Slot { object: Arc::downgrade(object), origin, root_of: root.unwrap_or(0) }
    }

    /// The object if it is still held, and whether it came from the load `origin` or before
    /// (or from a root row of the statement `root`).
    fn held(&mut self, origin: Origin, root: Root) -> Option<(Arc<M>, Held)> {
        let object = self.object.upgrade()?;
        if let Some(statement) = root {
            if std::mem::replace(&mut self.root_of, statement) == statement {
                return Some((object, Held::Repeated));
            }
        }
        let from = if self.origin == origin { Held::ThisLoad } else { Held::Earlier };
        Some((object, from))
    }
}

/// The identity map of one model.
///
/// Keys that are small non-negative integers (ids from a sequence: see [`SqlKey::as_index`])
/// are slots of a vector indexed by the key: no hashing, and a statement that reads rows in key
/// order fills it front to back instead of touching a hash table at random (decoding 100,000
/// people: a cache miss per row). It covers the keys below about twice the number of entries;
/// every other key is hashed. A key is in one of the two, never both: when the vector grows,
/// the hashed keys it now covers move into it.
pub(crate) struct ModelMap<M: Model> {
    dense: Vec<Option<Slot<M>>>,
    sparse: FxHashMap<M::Key, Slot<M>>,
    /// Hashed keys that have an index (beyond the vector when they came): the ones that may
    /// move into it when it grows.
    sparse_indexed: usize,
    /// Entries in both.
    len: usize,
    // Dead entries are pruned when the map reaches this size.
    prune_at: usize,
}

/// The vector of a [`ModelMap`] covers at least this many keys once it is used, and keys
/// below twice the entries plus this many.
const DENSE_MIN: usize = 1024;

impl<M: Model> ModelMap<M> {
    fn new() -> Self {
        ModelMap {
            dense: Vec::new(),
            sparse: FxHashMap::default(),
            sparse_indexed: 0,
            len: 0,
            prune_at: 1024,
        }
    }

    /// The slot of `key`'s entry, if it is (or now belongs) in the vector.
    fn dense_index(&mut self, key: &M::Key) -> Option<usize> {
        let index = key.as_index()?;
        if index < self.dense.len() {
            return Some(index);
        }
        // Cover the key if it is below about twice the entries (ids far beyond the rows held,
        // such as generated 64-bit ids, are hashed). Doubling: the vector grows a few times,
        // to at most about four slots per entry.
        if index >= 2 * self.len + DENSE_MIN {
            return None;
        }
        let old = self.dense.len();
        let new = (index + 1).max(2 * old).max(DENSE_MIN);
        self.dense.resize_with(new, || None);
        // Hashed keys the vector now covers move into it.
        if self.sparse_indexed > 0 {
            let covered: Vec<M::Key> = self
                .sparse
                .keys()
                .filter(|k| k.as_index().is_some_and(|i| (old..new).contains(&i)))
                .cloned()
                .collect();
            for key in covered {
                if let (Some(i), Some(slot)) = (key.as_index(), self.sparse.remove(&key)) {
                    self.dense[i] = Some(slot);
                    self.sparse_indexed -= 1;
                }
            }
        }
        Some(index)
    }

    fn slot(&self, key: &M::Key) -> Option<&Slot<M>> {
        match key.as_index() {
            Some(index) if index < self.dense.len() => self.dense[index].as_ref(),
            _ => self.sparse.get(key),
        }
    }

    pub(crate) fn get(&self, key: &M::Key) -> Option<Arc<M>> {
        self.slot(key).and_then(|e| e.object.upgrade())
    }

    /// The held object with `key`, or the one `decode` makes, held from now on (one probe
    /// either way), and whether it is new, held from an earlier load, or from this one.
    /// `root`: the row is a root of that statement, which must not reach a key twice.
    ///
    /// An object held from an earlier load is decoded again and compared with the row: a changed
    /// row (or any row, with [`Refresh::All`]) makes a new object, which the map holds from now
    /// on ([`Held::New`]); the old one stays as it is for those who hold it.
    pub(crate) fn get_or_decode<E>(
        &mut self,
        key: M::Key,
        origin: Origin,
        root: Root,
        refresh: Refresh,
        decode: impl FnOnce(M::Key) -> Result<M, E>,
    ) -> Result<(Arc<M>, Held), E> {
        let slot = match self.dense_index(&key) {
            Some(index) => {
                let entry = &mut self.dense[index];
                if entry.is_none() {
                    self.len += 1;
                }
                entry.get_or_insert_with(Slot::dead)
            }
            None => match self.sparse.entry(key.clone()) {
                Entry::Occupied(held) => held.into_mut(),
                Entry::Vacant(slot) => {
                    self.sparse_indexed += usize::from(key.as_index().is_some());
                    self.len += 1;
                    slot.insert(Slot::dead())
                }
            },
        };
        Self::get_or_decode_in(slot, key, origin, root, refresh, decode)
    }

    fn get_or_decode_in<E>(
        slot: &mut Slot<M>,
        key: M::Key,
        origin: Origin,
        root: Root,
        refresh: Refresh,
        decode: impl FnOnce(M::Key) -> Result<M, E>,
    ) -> Result<(Arc<M>, Held), E> {
        let held = slot.held(origin, root);
        let object = match held {
            Some((object, Held::Earlier)) => {
                let row = decode(key)?;
                if refresh == Refresh::Changed && object.same_row(&row) {
                    return Ok((object, Held::Earlier));
                }
                Arc::new(row)
            }
            Some(held) => return Ok(held),
            None => Arc::new(decode(key)?),
        };
        *slot = Slot::new(&object, origin, root);
        Ok((object, Held::New))
    }

    /// Drops the entries of objects nobody holds, when the map has doubled since the last time.
    /// Run between statements, not per row: during a statement every object it reached is held,
    /// and checking them all (a cache miss each) would find nothing to drop.
    fn prune(&mut self) {
        if self.len >= self.prune_at {
            self.prune_dead();
        }
    }

    /// Drops the entries of objects nobody holds, now.
    fn prune_dead(&mut self) {
        let mut live = 0;
        for entry in &mut self.dense {
            match entry {
                Some(e) if e.object.strong_count() == 0 => *entry = None,
                Some(_) => live += 1,
                None => {}
            }
        }
        self.sparse.retain(|_, e| e.object.strong_count() > 0);
        self.sparse_indexed = self.sparse.keys().filter(|k| k.as_index().is_some()).count();
        self.len = live + self.sparse.len();
        self.prune_at = (self.len * 2).max(1024);
    }

    /// Forgets the object with `key`: the next load reads its row into a new object.
    pub(crate) fn forget(&mut self, key: &M::Key) {
        match key.as_index() {
            Some(index) if index < self.dense.len() => {
                if self.dense[index].take().is_some() {
                    self.len -= 1;
                }
            }
            _ => {
                if self.sparse.remove(key).is_some() {
                    self.sparse_indexed -= usize::from(key.as_index().is_some());
                    self.len -= 1;
                }
            }
        }
    }

    /// The load the object with `key` first came from.
    pub(crate) fn origin(&self, key: &M::Key) -> Option<Origin> {
        self.slot(key).filter(|e| e.object.strong_count() > 0).map(|e| e.origin)
    }
}

impl<M: Model> Drop for ModelMap<M> {
    /// Releases the weak entries; the objects the application already dropped are freed here.
    /// When they span more memory than a cache holds, in address order: freeing 100,000 blocks
    /// in hash order makes the allocator's coalescing miss the cache on every block (selectin
    /// people at 100k: 127 -> 120 ms), while below that the sort costs more than it saves (4 %
    /// at 10k). (The vector's entries, in key order, are mostly in address order already.)
    fn drop(&mut self) {
        let dense = std::mem::take(&mut self.dense).into_iter().flatten();
        let mut weak: Vec<Weak<M>> = dense
            .chain(self.sparse.drain().map(|(_, slot)| slot))
            .map(|slot| slot.object)
            .collect();
        if weak.len() * std::mem::size_of::<M>() > SORTED_RELEASE_BYTES {
            weak.sort_unstable_by_key(|w| w.as_ptr() as usize);
        }
    }
}

/// Above this many bytes of objects, [`ModelMap`] releases its entries in address order.
const SORTED_RELEASE_BYTES: usize = 4 << 20;

impl IdentityMap {
    pub(crate) fn model<M: Model>(&mut self) -> &mut ModelMap<M> {
        let id = TypeId::of::<M>();
        let index = match self.maps.iter().position(|(model, _)| *model == id) {
            Some(index) => index,
            None => {
                self.maps.push((id, Box::new(ModelMap::<M>::new())));
                self.maps.len() - 1
            }
        };
        self.maps[index]
            .1
            .as_any_mut()
            .downcast_mut::<ModelMap<M>>()
            .expect("identity map entries are keyed by their model's TypeId")
    }

    /// A number for the next statement, for [`Root`]: never 0, and when the numbers wrap (after
    /// 4 billion statements) no slot keeps an old one.
    pub(crate) fn next_statement(&mut self) -> Statement {
        self.statements = self.statements.wrapping_add(1);
        if self.statements == 0 {
            for (_, map) in &mut self.maps {
                map.forget_roots();
            }
            self.statements = 1;
        }
        self.statements
    }

    /// Forgets the objects that loads after `origin` decoded: a rolled-back transaction's
    /// loads may have read its own writes.
    pub(crate) fn forget_since(&mut self, origin: Origin) {
        for (_, map) in &mut self.maps {
            map.forget_since(origin);
        }
    }

    /// Prunes every model's map that has doubled since its last pruning.
    pub(crate) fn prune(&mut self) {
        for (_, map) in &mut self.maps {
            map.prune();
        }
    }

    /// Drops the entries of objects nobody holds, in every model's map: after a failed load,
    /// whose partial graph is gone.
    pub(crate) fn prune_dead(&mut self) {
        for (_, map) in &mut self.maps {
            map.prune_dead();
        }
    }

    /// Whether the map has any entry of model `M` (possibly of objects since dropped).
    pub(crate) fn holds<M: Model>(&self) -> bool {
        let id = TypeId::of::<M>();
        self.maps.iter().any(|(model, map)| *model == id && !map.is_empty())
    }

    pub(crate) fn get<M: Model>(&mut self, key: &M::Key) -> Option<Arc<M>> {
        self.model::<M>().get(key)
    }
}
