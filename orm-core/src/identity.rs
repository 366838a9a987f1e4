//! A graph's objects and its identity map: each model's objects in one table whose elements
//! never move, and one entry per `(model, key)` pointing at the object that key's row decoded
//! to last, with the load it first came from (its origin, for the N+1 detector: a later load
//! that reaches the object again does not make it "from" that load).

use std::any::{Any, TypeId};
use std::hash::BuildHasher;
use std::ptr::NonNull;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use crate::key::SqlKey;
use crate::model::Model;

/// A load's number, for the N+1 detector and for forgetting what a rolled-back transaction's loads
/// read (32 bits keep an identity entry at 16 bytes for 32-bit
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

/// Every model's objects and map, in one graph.
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
    fn clear(&mut self);
    fn objects(&self) -> usize;
    fn set_mark(&mut self);
    fn truncate_to_mark(&mut self);
    fn forget_roots(&mut self);
    fn forget_since(&mut self, origin: Origin);
    fn is_empty(&self) -> bool;
}

impl<M: Model> AnyMap for ModelMap<M> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn clear(&mut self) {
        // Entries first: they point into the objects.
        self.dense.clear();
        self.sparse.clear();
        self.sparse_indexed = 0;
        self.len = 0;
        self.objects.clear();
    }

    fn objects(&self) -> usize {
        self.objects.len
    }

    fn set_mark(&mut self) {
        self.mark = self.objects.len;
    }

    fn truncate_to_mark(&mut self) {
        self.objects.truncate(self.mark);
    }

    fn forget_roots(&mut self) {
        let dense = self.dense.iter_mut().flatten();
        for slot in dense.chain(self.sparse.iter_mut()) {
            slot.root_of = 0;
        }
    }

    fn forget_since(&mut self, origin: Origin) {
        for entry in &mut self.dense {
            if entry.as_ref().is_some_and(|slot| slot.origin > origin) {
                *entry = None;
            }
        }
        self.sparse.retain(|slot| slot.origin <= origin);
        self.recount();
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

struct Slot<M> {
    /// `None` while its object is being decoded (the slot is reserved first).
    object: Option<NonNull<M>>,
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
    /// An entry for an object not decoded yet.
    fn dead() -> Self {
        Slot { object: None, origin: 0, root_of: 0 }
    }

    fn new(object: NonNull<M>, origin: Origin, root: Root) -> Self {
        Slot { object: Some(object), origin, root_of: root.unwrap_or(0) }
    }

    /// The object if there is one, and whether it came from the load `origin` or before
    /// (or from a root row of the statement `root`).
    fn held(&mut self, origin: Origin, root: Root) -> Option<(NonNull<M>, Held)> {
        let object = self.object?;
        if let Some(statement) = root {
            if std::mem::replace(&mut self.root_of, statement) == statement {
                return Some((object, Held::Repeated));
            }
        }
        let from = if self.origin == origin { Held::ThisLoad } else { Held::Earlier };
        Some((object, from))
    }
}

/// The objects and identity map of one model.
///
/// Keys that are small non-negative integers (ids from a sequence: see [`SqlKey::as_index`])
/// are slots of a vector indexed by the key: no hashing, and a statement that reads rows in key
/// order fills it front to back instead of touching a hash table at random (decoding 100,000
/// people: a cache miss per row). It covers the keys below about twice the number of entries;
/// every other key is hashed. A key is in one of the two, never both: when the vector grows,
/// the hashed keys it now covers move into it.
pub(crate) struct ModelMap<M: Model> {
    /// Every object decoded into the graph, the ones no entry points at any more included (an
    /// older object of a row that changed, still held by whoever read it): appended, never
    /// moved, dropped with the graph.
    objects: Table<M>,
    dense: Vec<Option<Slot<M>>>,
    /// The hashed entries. They own no key: an entry is found through its object's key field
    /// (`Model::key`), so a text key is never copied into the map (an allocation per object).
    /// Every entry here has its object.
    sparse: HashTable<Slot<M>>,
    /// Hashed keys that have an index (beyond the vector when they came): the ones that may
    /// move into it when it grows.
    sparse_indexed: usize,
    /// Entries in both.
    len: usize,
    /// The objects there were when [`IdentityMap::set_mark`] last ran.
    mark: usize,
}

// SAFETY: the entries point into `objects`, which the map owns: sending the map sends the
// objects (`M: Send`, a model) along with the pointers to them.
#[allow(unsafe_code)]
unsafe impl<M: Model> Send for ModelMap<M> {}

/// A model's objects: appended, never moved while the graph lives, so a pointer to one stays
/// valid. Chunks of doubling capacity, each a `Vec` never grown past the capacity it was made
/// with; cleared and truncated chunks keep their memory for the next objects.
struct Table<M> {
    chunks: Vec<Vec<M>>,
    /// The chunk being filled.
    filling: usize,
    len: usize,
}

impl<M> Default for Table<M> {
    fn default() -> Self {
        Table { chunks: Vec::new(), filling: 0, len: 0 }
    }
}

/// Objects in a table's first chunk; each next chunk holds twice as many, up to
/// `FIRST_CHUNK << MAX_DOUBLINGS`.
const FIRST_CHUNK: usize = 64;
const MAX_DOUBLINGS: usize = 12;

impl<M> Table<M> {
    /// Appends `object` and returns its address, stable until it is dropped.
    fn push(&mut self, object: M) -> NonNull<M> {
        while self.chunks.get(self.filling).is_some_and(|c| c.len() == c.capacity()) {
            self.filling += 1;
        }
        if self.filling == self.chunks.len() {
            let capacity = FIRST_CHUNK << self.chunks.len().min(MAX_DOUBLINGS);
            self.chunks.push(Vec::with_capacity(capacity));
        }
        let chunk = &mut self.chunks[self.filling];
        // Within its capacity: the chunk's elements do not move.
        chunk.push(object);
        self.len += 1;
        NonNull::from(&chunk[chunk.len() - 1])
    }

    /// Drops the objects after the first `len`.
    fn truncate(&mut self, len: usize) {
        while self.len > len {
            let Some(chunk) = self.chunks.get_mut(self.filling) else { break };
            let keep = chunk.len().saturating_sub(self.len - len);
            self.len -= chunk.len() - keep;
            chunk.truncate(keep);
            if keep == 0 && self.filling > 0 {
                self.filling -= 1;
            }
        }
    }

    /// Drops every object, keeping the chunks.
    fn clear(&mut self) {
        for chunk in &mut self.chunks {
            chunk.clear();
        }
        self.filling = 0;
        self.len = 0;
    }
}

/// The vector of a [`ModelMap`] covers at least this many keys once it is used, and keys
/// below twice the entries plus this many.
const DENSE_MIN: usize = 1024;

impl<M: Model> ModelMap<M> {
    fn new() -> Self {
        ModelMap {
            objects: Table::default(),
            dense: Vec::new(),
            sparse: HashTable::new(),
            sparse_indexed: 0,
            len: 0,
            mark: 0,
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
            let covered = |slot: &mut Slot<M>| {
                Self::key_of(slot).as_index().is_some_and(|i| (old..new).contains(&i))
            };
            for slot in self.sparse.extract_if(covered).collect::<Vec<_>>() {
                if let Some(i) = Self::key_of(&slot).as_index() {
                    self.dense[i] = Some(slot);
                    self.sparse_indexed -= 1;
                }
            }
        }
        Some(index)
    }

    /// The key of a hashed entry's object.
    fn key_of(slot: &Slot<M>) -> &M::Key {
        let object = slot.object.expect("a hashed entry has its object");
        // SAFETY: an entry points into `objects`, whose elements live as long as the map (they
        // are dropped by `clear` or with the map, after the entries).
        #[allow(unsafe_code)]
        let object = unsafe { object.as_ref() };
        object.key()
    }

    fn hash(key: &M::Key) -> u64 {
        FxBuildHasher.hash_one(key)
    }

    fn slot(&self, key: &M::Key) -> Option<&Slot<M>> {
        match key.as_index() {
            Some(index) if index < self.dense.len() => self.dense[index].as_ref(),
            _ => self.sparse.find(Self::hash(key), |slot| Self::key_of(slot) == key),
        }
    }

    pub(crate) fn get(&self, key: &M::Key) -> Option<NonNull<M>> {
        self.slot(key).and_then(|e| e.object)
    }

    /// The object with `key`, or the one `decode` makes, added to the graph and the map (one
    /// probe either way), and whether it is new, from an earlier load, or from this one.
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
    ) -> Result<(NonNull<M>, Held), E> {
        let slot = match self.dense_index(&key) {
            Some(index) => {
                let entry = &mut self.dense[index];
                if entry.is_none() {
                    self.len += 1;
                }
                entry.get_or_insert_with(Slot::dead)
            }
            None => {
                let hash = Self::hash(&key);
                match self.sparse.find_mut(hash, |slot| Self::key_of(slot) == &key) {
                    Some(slot) => slot,
                    None => {
                        // A new key: decoded first, then entered under its object's key (the
                        // table holds no entry without an object).
                        let indexed = key.as_index().is_some();
                        let object = self.objects.push(decode(key)?);
                        let slot = Slot::new(object, origin, root);
                        self.sparse
                            .insert_unique(hash, slot, |slot| Self::hash(Self::key_of(slot)));
                        self.sparse_indexed += usize::from(indexed);
                        self.len += 1;
                        return Ok((object, Held::New));
                    }
                }
            }
        };
        let held = slot.held(origin, root);
        let row = match held {
            Some((object, Held::Earlier)) => {
                let row = decode(key)?;
                // SAFETY: the entry points into `objects`, whose elements live as long as the
                // map (they are dropped by `clear` or with the map, after the entries).
                #[allow(unsafe_code)]
                let held = unsafe { object.as_ref() };
                if refresh == Refresh::Changed && held.same_row(&row) {
                    return Ok((object, Held::Earlier));
                }
                row
            }
            Some(held) => return Ok(held),
            None => decode(key)?,
        };
        let object = self.objects.push(row);
        *slot = Slot::new(object, origin, root);
        Ok((object, Held::New))
    }

    /// Recounts the entries after some were dropped.
    fn recount(&mut self) {
        self.sparse_indexed =
            self.sparse.iter().filter(|slot| Self::key_of(slot).as_index().is_some()).count();
        self.len = self.dense.iter().flatten().count() + self.sparse.len();
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
                let found =
                    self.sparse.find_entry(Self::hash(key), |slot| Self::key_of(slot) == key);
                if let Ok(entry) = found {
                    entry.remove();
                    self.sparse_indexed -= usize::from(key.as_index().is_some());
                    self.len -= 1;
                }
            }
        }
    }

    /// The load the object with `key` first came from, if `object` is the one the map holds.
    pub(crate) fn origin(&self, key: &M::Key, object: &M) -> Option<Origin> {
        let slot = self.slot(key)?;
        (slot.object? == NonNull::from(object)).then_some(slot.origin)
    }
}

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

    /// Drops every object and entry (see [`Graph::clear_if_unshared`](crate::graph::Graph)).
    pub(crate) fn clear(&mut self) {
        for (_, map) in &mut self.maps {
            map.clear();
        }
    }

    /// The number of objects, over every model.
    pub(crate) fn objects(&self) -> usize {
        self.maps.iter().map(|(_, map)| map.objects()).sum()
    }

    /// Records how many objects each model has: [`IdentityMap::truncate_to_mark`] drops what
    /// comes after (a model first reached later has none before).
    pub(crate) fn set_mark(&mut self) {
        for (_, map) in &mut self.maps {
            map.set_mark();
        }
    }

    /// Drops the objects added since [`IdentityMap::set_mark`], after a statement failed:
    /// nothing outside the statement points to them (it fills the relations of objects it did
    /// not create only once it succeeded, and hands out nothing before), and the entries
    /// pointing to them must be gone first ([`IdentityMap::forget_since`] the load's origin).
    pub(crate) fn truncate_to_mark(&mut self) {
        for (_, map) in &mut self.maps {
            map.truncate_to_mark();
        }
    }

    /// Forgets every entry, keeping the objects (for those who hold them).
    pub(crate) fn forget_all(&mut self) {
        self.forget_since(0);
        for (_, map) in &mut self.maps {
            map.forget_roots();
        }
    }

    /// Whether the map has any entry of model `M`.
    pub(crate) fn holds<M: Model>(&self) -> bool {
        let id = TypeId::of::<M>();
        self.maps.iter().any(|(model, map)| *model == id && !map.is_empty())
    }

    pub(crate) fn get<M: Model>(&mut self, key: &M::Key) -> Option<NonNull<M>> {
        self.model::<M>().get(key)
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::{Held, ModelMap, Refresh, Table};
    use crate::prelude::*;

    diesel::table! { tag (name) { name -> Text, uses -> Integer } }
    diesel::table! { big (id) { id -> BigInt } }

    #[derive(Model, Debug)]
    #[orm(table = tag, primary_key = name)]
    pub struct Tag {
        pub name: String,
        pub uses: i32,
    }

    #[derive(Model, Debug)]
    #[orm(table = big)]
    pub struct Big {
        pub id: i64,
    }

    /// Hashed entries own no key: they are found through their object's key, a changed row
    /// replaces the object under the same entry, and forgetting one leaves the others found.
    /// Run under Miri with `cargo +nightly miri test -p orm-core identity::`.
    #[test]
    fn text_keys_are_found_through_their_objects() {
        let mut map = ModelMap::<Tag>::new();
        let tag = |uses| move |name| Ok::<_, ()>(Tag { name, uses });
        let mut first = Vec::new();
        for i in 0..50 {
            let (object, held) =
                map.get_or_decode(format!("t{i}"), 1, None, Refresh::Changed, tag(i)).unwrap();
            assert_eq!(held, Held::New);
            first.push(object);
        }
        let again = map.get_or_decode("t7".to_owned(), 1, None, Refresh::Changed, tag(7));
        assert_eq!(again.unwrap(), (first[7], Held::ThisLoad));
        // A later load reads t7 changed: a new object, and the map now finds it.
        let (changed, held) =
            map.get_or_decode("t7".to_owned(), 2, None, Refresh::Changed, tag(70)).unwrap();
        assert_eq!(held, Held::New);
        assert_ne!(changed, first[7]);
        let found = map.get(&"t7".to_owned()).expect("t7 is held");
        // SAFETY: the map's objects live as long as the map.
        #[allow(unsafe_code)]
        let found = unsafe { found.as_ref() };
        assert_eq!(found.uses, 70);
        map.forget(&"t8".to_owned());
        assert!(map.get(&"t8".to_owned()).is_none());
        assert!((0..50).filter(|&i| i != 8).all(|i| map.get(&format!("t{i}")).is_some()));
        assert_eq!(map.len, 49);
        // A key that fails to decode leaves no entry.
        let failed = map.get_or_decode("bad".to_owned(), 2, None, Refresh::Changed, |_| Err(()));
        assert!(failed.is_err() && map.get(&"bad".to_owned()).is_none());
        assert_eq!(map.len, 49);
    }

    #[test]
    fn hashed_integer_keys_move_into_the_vector_when_it_covers_them() {
        let mut map = ModelMap::<Big>::new();
        let big = |id| Ok::<_, ()>(Big { id });
        // Beyond the vector's first size (1,024 keys): hashed.
        let far = 1_500;
        let (object, _) = map.get_or_decode(far, 1, None, Refresh::Changed, big).unwrap();
        assert_eq!((map.sparse.len(), map.sparse_indexed), (1, 1));
        // Past 1,024 entries in key order the vector doubles and covers it: it moves, and is
        // still found.
        for id in 0..1_100 {
            map.get_or_decode(id, 1, None, Refresh::Changed, big).unwrap();
        }
        assert_eq!((map.sparse.len(), map.sparse_indexed), (0, 0));
        assert_eq!(map.get(&far), Some(object));
        assert_eq!(map.len, 1_101);
    }

    #[test]
    fn a_table_never_moves_its_objects_and_truncates_what_came_after_a_mark() {
        let probe = Rc::new(());
        let mut table = Table::default();
        let first: Vec<_> = (0..100).map(|i| table.push((i, Rc::clone(&probe)))).collect();
        // Enough to fill several chunks after the first objects.
        for i in 100..5_000 {
            table.push((i, Rc::clone(&probe)));
        }
        for (i, object) in first.iter().enumerate() {
            // SAFETY: the table holds every object pushed, and has not dropped any.
            #[allow(unsafe_code)]
            let object = unsafe { object.as_ref() };
            assert_eq!(object.0, i);
        }
        table.truncate(150);
        assert_eq!((table.len, Rc::strong_count(&probe)), (150, 151));
        // The kept chunks take the next objects.
        let next = table.push((150, Rc::clone(&probe)));
        // SAFETY: just pushed.
        #[allow(unsafe_code)]
        let next = unsafe { next.as_ref() };
        assert_eq!(next.0, 150);
        table.truncate(0);
        assert_eq!((table.len, Rc::strong_count(&probe)), (0, 1));
        table.push((0, Rc::clone(&probe)));
        table.clear();
        assert_eq!((table.len, Rc::strong_count(&probe)), (0, 1));
    }
}
