//! Ownership prototypes (issue 20): the same graphs built in two other representations, next to
//! the ORM and the hand-written diesel of the suite, in the same run. Not the product: each
//! prototype stitches one workload by hand, as the loader would with that representation, to
//! measure what the representation itself costs to build, read and free.
//!
//! - **arena**: one graph per load; each model's objects in one `Vec`, relations as `u32`
//!   indices (collections as spans of one shared index list), keys to objects through a vector;
//!   the results hold the graph in one `Arc`. Nothing inside counts references, so no cycle can
//!   keep anything alive: the graph is freed as a few `Vec`s when its last handle goes.
//! - **owner**: one `Arc` per object as now, relations as strong `Arc`s, no session-wide weak
//!   identity map (identity within the load only); the results share one owner listing every
//!   object of the load, which empties every relation slot when it is dropped, so cycles are
//!   broken. Objects cannot be shared between two owners (a slot emptied under another owner's
//!   reader would be unsound), which is the arena's rule too.
//! - **store**: the arena as docs/design.md proposes to build it: objects appended to
//!   `boxcar` vectors that never move them (so handles on other threads can read while a lazy
//!   load appends), relation slots holding pointers into the same graph (an atomic pointer per
//!   to-one, a boxed slice per collection), keys behind a mutex locked once per statement, and
//!   one handle (`Arc` of the graph and a pointer) per root, as `Loaded` would be.
//!
//! ```text
//! ORM_BENCH_ONLY=ownership ORM_BENCH_SIZES=10000,100000 cargo bench -p orm-tests --bench graphs
//! ```

// The prototypes hold every column, as the models do, though the workloads read a few.
#![allow(dead_code)]

use std::sync::OnceLock;

use super::*;

/// A key-to-index table: a vector for the small non-negative keys of a sequence, a map for others
/// (the ORM's identity map does the same).
#[derive(Default)]
struct Slots {
    dense: Vec<u32>,
    sparse: HashMap<i32, u32>,
}

impl Slots {
    const ABSENT: u32 = u32::MAX;

    fn get(&self, key: i32) -> Option<u32> {
        match usize::try_from(key).ok().and_then(|k| self.dense.get(k)) {
            Some(&i) if i != Self::ABSENT => Some(i),
            Some(_) => None,
            None => self.sparse.get(&key).copied(),
        }
    }

    fn get_or_insert(&mut self, key: i32, insert: impl FnOnce() -> u32) -> (u32, bool) {
        if let Some(found) = self.get(key) {
            return (found, false);
        }
        let index = insert();
        match usize::try_from(key) {
            Ok(k) if k < 2 * (self.dense.len() + 1024) => {
                if k >= self.dense.len() {
                    self.dense.resize((k + 1).max(self.dense.len() * 2), Self::ABSENT);
                }
                self.dense[k] = index;
            }
            _ => {
                self.sparse.insert(key, index);
            }
        }
        (index, true)
    }
}

/// The statements the prototypes build from (the ones the ORM runs for the same graph), read
/// row by row.
mod rows_of {
    use diesel::connection::DefaultLoadingMode;

    use super::*;

    pub fn people_with_addresses(
        conn: &mut Conn,
    ) -> impl Iterator<Item = QueryResult<(PersonRow, Option<AddressRow>)>> + '_ {
        person::table
            .left_join(address::table)
            .order_by(person::id)
            .select((PersonRow::as_select(), Option::<AddressRow>::as_select()))
            .load_iter::<_, DefaultLoadingMode>(conn)
            .unwrap()
    }

    /// The people up to id `up_to` (one statement shape for any bound: prepared once).
    pub fn people_up_to(
        conn: &mut Conn,
        up_to: i32,
    ) -> impl Iterator<Item = QueryResult<PersonRow>> + '_ {
        person::table
            .filter(person::id.le(up_to))
            .order_by(person::id)
            .select(PersonRow::as_select())
            .load_iter::<_, DefaultLoadingMode>(conn)
            .unwrap()
    }

    /// The reports of `managers` (one `IN` chunk).
    pub fn reports_of<'a>(
        conn: &'a mut Conn,
        managers: &'a [i32],
    ) -> impl Iterator<Item = QueryResult<PersonRow>> + 'a {
        person::table
            .filter(person::manager_id.eq_any(managers))
            .select(PersonRow::as_select())
            .load_iter::<_, DefaultLoadingMode>(conn)
            .unwrap()
    }

    /// The reports of one manager (a lazy load: `= ?`, prepared once).
    pub fn reports_of_one(
        conn: &mut Conn,
        boss: i32,
    ) -> impl Iterator<Item = QueryResult<PersonRow>> + '_ {
        person::table
            .filter(person::manager_id.eq(boss))
            .select(PersonRow::as_select())
            .load_iter::<_, DefaultLoadingMode>(conn)
            .unwrap()
    }

    /// The projects of `people` (one `IN` chunk), with the person of each link.
    pub fn projects_of<'a>(
        conn: &'a mut Conn,
        people: &'a [i32],
    ) -> impl Iterator<Item = QueryResult<(i32, ProjectRow)>> + 'a {
        person_project::table
            .inner_join(project::table)
            .filter(person_project::person_id.eq_any(people))
            .select((person_project::person_id, ProjectRow::as_select()))
            .load_iter::<_, DefaultLoadingMode>(conn)
            .unwrap()
    }

    /// Every person with the manager joined.
    pub fn people_with_managers(
        conn: &mut Conn,
    ) -> impl Iterator<Item = QueryResult<(PersonRow, Option<PersonRow>)>> + '_ {
        person::table
            .left_join(manager.on(person::manager_id.eq(manager.field(person::id).nullable())))
            .order_by(person::id)
            .select((
                PersonRow::as_select(),
                manager
                    .fields((
                        person::id,
                        person::firstname,
                        person::lastname,
                        person::address_id,
                        person::manager_id,
                    ))
                    .nullable(),
            ))
            .load_iter::<_, DefaultLoadingMode>(conn)
            .unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// The arena.

mod arena {
    use super::*;

    /// A to-one slot: not loaded, loaded and empty, or the index of the object.
    pub const UNLOADED: u32 = u32::MAX;
    pub const NULL: u32 = u32::MAX - 1;

    /// A collection slot: `len` indices from `start` in [`Graph::members`]; not loaded when
    /// `start` is `UNLOADED`.
    #[derive(Clone, Copy)]
    pub struct Span {
        pub start: u32,
        pub len: u32,
    }

    impl Span {
        pub const UNLOADED: Span = Span { start: UNLOADED, len: 0 };
    }

    pub struct APerson {
        pub id: i32,
        pub firstname: String,
        pub lastname: String,
        pub address_id: Option<i32>,
        pub manager_id: Option<i32>,
        pub address: u32,
        pub manager: u32,
        pub reports: Span,
        pub projects: Span,
    }

    pub struct AAddress {
        pub id: i32,
        pub street: String,
        pub city: String,
    }

    pub struct AProject {
        pub id: i32,
        pub name: String,
    }

    /// One load's objects.
    #[derive(Default)]
    pub struct Graph {
        pub people: Vec<APerson>,
        pub addresses: Vec<AAddress>,
        pub projects: Vec<AProject>,
        /// The members of every collection, each collection's contiguous.
        pub members: Vec<u32>,
        pub person_at: Slots,
        pub address_at: Slots,
        pub project_at: Slots,
    }

    /// What a load returns: the graph and its roots.
    pub struct Results {
        pub graph: Arc<Graph>,
        pub roots: Vec<u32>,
    }

    impl Graph {
        pub fn person(&mut self, row: PersonRow) -> u32 {
            let people = &mut self.people;
            self.person_at
                .get_or_insert(row.id, || {
                    people.push(APerson {
                        id: row.id,
                        firstname: row.firstname,
                        lastname: row.lastname,
                        address_id: row.address_id,
                        manager_id: row.manager_id,
                        address: UNLOADED,
                        manager: UNLOADED,
                        reports: Span::UNLOADED,
                        projects: Span::UNLOADED,
                    });
                    (people.len() - 1) as u32
                })
                .0
        }

        pub fn address(&mut self, row: Option<AddressRow>) -> u32 {
            let Some(row) = row else { return NULL };
            let addresses = &mut self.addresses;
            self.address_at
                .get_or_insert(row.id, || {
                    addresses.push(AAddress { id: row.id, street: row.street, city: row.city });
                    (addresses.len() - 1) as u32
                })
                .0
        }

        pub fn project(&mut self, row: ProjectRow) -> u32 {
            let projects = &mut self.projects;
            self.project_at
                .get_or_insert(row.id, || {
                    projects.push(AProject { id: row.id, name: row.name });
                    (projects.len() - 1) as u32
                })
                .0
        }

        /// Fills a collection slot of every parent from `(parent, member)` pairs, grouped by a
        /// counting sort: one pass to count, one to place.
        pub fn collections(
            &mut self,
            pairs: &[(u32, u32)],
            parents: &[u32],
            slot: fn(&mut APerson) -> &mut Span,
        ) {
            let mut counts = vec![0u32; self.people.len() + 1];
            for &(parent, _) in pairs {
                counts[parent as usize + 1] += 1;
            }
            for i in 1..counts.len() {
                counts[i] += counts[i - 1];
            }
            let base = self.members.len() as u32;
            self.members.resize(self.members.len() + pairs.len(), 0);
            let mut next = counts.clone();
            for &(parent, member) in pairs {
                let at = &mut next[parent as usize];
                self.members[(base + *at) as usize] = member;
                *at += 1;
            }
            for &parent in parents {
                let p = parent as usize;
                *slot(&mut self.people[p]) =
                    Span { start: base + counts[p], len: counts[p + 1] - counts[p] };
            }
        }

        /// Orders each span of `parents` by the members' keys (as the ORM orders collections).
        pub fn order(
            &mut self,
            parents: &[u32],
            slot: fn(&APerson) -> Span,
            key: impl Fn(&Graph, u32) -> i32,
        ) {
            let mut members = std::mem::take(&mut self.members);
            for &parent in parents {
                let span = slot(&self.people[parent as usize]);
                let range = span.start as usize..(span.start + span.len) as usize;
                members[range].sort_unstable_by_key(|&m| key(self, m));
            }
            self.members = members;
        }

        pub fn members(&self, span: Span) -> &[u32] {
            &self.members[span.start as usize..(span.start + span.len) as usize]
        }
    }

    pub fn decode(conn: &mut Conn) -> Results {
        let mut graph = Graph::default();
        let mut roots = Vec::new();
        let rows = rows_of::people_with_addresses(conn);
        for row in rows {
            let (person, address) = row.unwrap();
            let address = graph.address(address);
            let p = graph.person(person);
            graph.people[p as usize].address = address;
            roots.push(p);
        }
        Results { graph: Arc::new(graph), roots }
    }

    pub fn decode_sum(r: &Results) -> u64 {
        let g = &*r.graph;
        r.roots
            .iter()
            .map(|&p| {
                let p = &g.people[p as usize];
                let address = match p.address {
                    UNLOADED | NULL => None,
                    a => Some(&g.addresses[a as usize]).map(|a| (a.id, a.city.as_str())),
                };
                person_sum(p.id, &p.firstname) + address_sum(address)
            })
            .sum()
    }

    /// The people, streamed into the graph.
    fn people(conn: &mut Conn, graph: &mut Graph, up_to: Option<i32>) -> Vec<u32> {
        // One statement shape either way: diesel prepares it once per connection.
        rows_of::people_up_to(conn, up_to.unwrap_or(i32::MAX))
            .map(|row| graph.person(row.unwrap()))
            .collect()
    }

    /// Sorted distinct ids of `roots`.
    fn ids(graph: &Graph, roots: &[u32]) -> Vec<i32> {
        let mut ids: Vec<i32> = roots.iter().map(|&p| graph.people[p as usize].id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// `selectin` of `reports` for `roots`: one `IN` statement per chunk.
    fn reports(conn: &mut Conn, graph: &mut Graph, roots: &[u32]) {
        let ids = ids(graph, roots);
        let mut pairs = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let rows = rows_of::reports_of(conn, chunk);
            for row in rows {
                let row = row.unwrap();
                let parent = graph.person_at.get(row.manager_id.unwrap()).unwrap();
                let child = graph.person(row);
                pairs.push((parent, child));
            }
        }
        graph.collections(&pairs, roots, |p| &mut p.reports);
        graph.order(roots, |p| p.reports, |g, m| g.people[m as usize].id);
    }

    pub fn reports_of_first_tenth(conn: &mut Conn, n: usize) -> Results {
        let mut graph = Graph::default();
        let roots = people(conn, &mut graph, Some((n / 10) as i32));
        reports(conn, &mut graph, &roots);
        Results { graph: Arc::new(graph), roots }
    }

    pub fn reports_sum(r: &Results) -> u64 {
        let g = &*r.graph;
        r.roots
            .iter()
            .map(|&p| {
                let p = &g.people[p as usize];
                person_sum(p.id, &p.firstname)
                    + g.members(p.reports)
                        .iter()
                        .map(|&c| {
                            let c = &g.people[c as usize];
                            person_sum(c.id, &c.firstname)
                        })
                        .sum::<u64>()
            })
            .sum()
    }

    pub fn projects(conn: &mut Conn) -> Results {
        let mut graph = Graph::default();
        let roots = people(conn, &mut graph, None);
        let ids = ids(&graph, &roots);
        let mut pairs = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let rows = rows_of::projects_of(conn, chunk);
            for row in rows {
                let (person, project) = row.unwrap();
                let parent = graph.person_at.get(person).unwrap();
                let member = graph.project(project);
                pairs.push((parent, member));
            }
        }
        graph.collections(&pairs, &roots, |p| &mut p.projects);
        graph.order(&roots, |p| p.projects, |g, m| g.projects[m as usize].id);
        Results { graph: Arc::new(graph), roots }
    }

    pub fn projects_sum(r: &Results) -> u64 {
        let g = &*r.graph;
        r.roots
            .iter()
            .map(|&p| {
                let p = &g.people[p as usize];
                person_sum(p.id, &p.firstname)
                    + g.members(p.projects)
                        .iter()
                        .map(|&t| {
                            project_sum(g.projects[t as usize].id, &g.projects[t as usize].name)
                        })
                        .sum::<u64>()
            })
            .sum()
    }

    /// Every person of a chain with its manager as an index (the manager is the previous row).
    pub fn chain(conn: &mut Conn) -> Graph {
        let mut graph = Graph::default();
        let rows = rows_of::people_up_to(conn, i32::MAX);
        for row in rows {
            let row = row.unwrap();
            let boss = row.manager_id.and_then(|m| graph.person_at.get(m)).unwrap_or(NULL);
            let p = graph.person(row);
            graph.people[p as usize].manager = boss;
        }
        graph
    }

    /// Both directions: every person with `joined` manager and `selectin` reports.
    pub fn both_directions(conn: &mut Conn) -> Results {
        let mut graph = Graph::default();
        let rows = rows_of::people_with_managers(conn);
        let mut roots = Vec::new();
        for row in rows {
            let (person, boss) = row.unwrap();
            let boss = boss.map_or(NULL, |b| graph.person(b));
            let p = graph.person(person);
            graph.people[p as usize].manager = boss;
            roots.push(p);
        }
        reports(conn, &mut graph, &roots);
        Results { graph: Arc::new(graph), roots }
    }
}

// ---------------------------------------------------------------------------------------------
// Arcs with a graph owner.

mod owner {
    use super::*;

    pub struct OPerson {
        pub id: i32,
        pub firstname: String,
        pub lastname: String,
        pub address_id: Option<i32>,
        pub manager_id: Option<i32>,
        pub address: OnceLock<Option<Arc<OAddress>>>,
        pub manager: OnceLock<Option<Arc<OPerson>>>,
        pub reports: OnceLock<Vec<Arc<OPerson>>>,
        pub projects: OnceLock<Vec<Arc<OProject>>>,
    }

    pub struct OAddress {
        pub id: i32,
        pub street: String,
        pub city: String,
    }

    pub struct OProject {
        pub id: i32,
        pub name: String,
    }

    /// Every object of one load; dropping it empties every relation slot of its people.
    #[derive(Default)]
    pub struct Owner {
        people: Vec<Arc<OPerson>>,
        person_at: Slots,
        addresses: Vec<Arc<OAddress>>,
        address_at: Slots,
        projects: Vec<Arc<OProject>>,
        project_at: Slots,
    }

    impl Drop for Owner {
        fn drop(&mut self) {
            for person in &mut self.people {
                // SAFETY: the owner is dropped when the last result handle is, and objects are
                // never shared with another owner, so nothing can read these slots any more:
                // the only other references to the person are `Arc`s in slots of this owner's
                // objects, which are not read while the owner drops. (A prototype's argument:
                // the product would need the API to make "not shared" true by construction.)
                let person = unsafe { &mut *(Arc::as_ptr(person) as *mut OPerson) };
                person.manager.take();
                person.reports.take();
            }
        }
    }

    /// What a load returns.
    pub struct Results {
        pub owner: Arc<Owner>,
        pub roots: Vec<Arc<OPerson>>,
    }

    impl Owner {
        pub fn person(&mut self, row: PersonRow) -> Arc<OPerson> {
            let people = &mut self.people;
            let (i, _) = self.person_at.get_or_insert(row.id, || {
                people.push(Arc::new(OPerson {
                    id: row.id,
                    firstname: row.firstname,
                    lastname: row.lastname,
                    address_id: row.address_id,
                    manager_id: row.manager_id,
                    address: OnceLock::new(),
                    manager: OnceLock::new(),
                    reports: OnceLock::new(),
                    projects: OnceLock::new(),
                }));
                (people.len() - 1) as u32
            });
            Arc::clone(&self.people[i as usize])
        }

        fn address(&mut self, row: Option<AddressRow>) -> Option<Arc<OAddress>> {
            let row = row?;
            let addresses = &mut self.addresses;
            let (i, _) = self.address_at.get_or_insert(row.id, || {
                addresses.push(Arc::new(OAddress {
                    id: row.id,
                    street: row.street,
                    city: row.city,
                }));
                (addresses.len() - 1) as u32
            });
            Some(Arc::clone(&self.addresses[i as usize]))
        }

        fn project(&mut self, row: ProjectRow) -> Arc<OProject> {
            let projects = &mut self.projects;
            let (i, _) = self.project_at.get_or_insert(row.id, || {
                projects.push(Arc::new(OProject { id: row.id, name: row.name }));
                (projects.len() - 1) as u32
            });
            Arc::clone(&self.projects[i as usize])
        }
    }

    pub fn decode(conn: &mut Conn) -> Results {
        let mut owner = Owner::default();
        let mut roots = Vec::new();
        let rows = rows_of::people_with_addresses(conn);
        for row in rows {
            let (person, address) = row.unwrap();
            let address = owner.address(address);
            let p = owner.person(person);
            let _ = p.address.set(address);
            roots.push(p);
        }
        Results { owner: Arc::new(owner), roots }
    }

    pub fn decode_sum(r: &Results) -> u64 {
        r.roots
            .iter()
            .map(|p| {
                let address = p.address.get().unwrap().as_ref().map(|a| (a.id, a.city.as_str()));
                person_sum(p.id, &p.firstname) + address_sum(address)
            })
            .sum()
    }

    fn people(conn: &mut Conn, owner: &mut Owner, up_to: Option<i32>) -> Vec<Arc<OPerson>> {
        rows_of::people_up_to(conn, up_to.unwrap_or(i32::MAX))
            .map(|row| owner.person(row.unwrap()))
            .collect()
    }

    fn ids(roots: &[Arc<OPerson>]) -> Vec<i32> {
        let mut ids: Vec<i32> = roots.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn reports(conn: &mut Conn, owner: &mut Owner, roots: &[Arc<OPerson>]) {
        let mut found: Vec<Vec<Arc<OPerson>>> = Vec::new();
        for chunk in ids(roots).chunks(CHUNK) {
            let rows = rows_of::reports_of(conn, chunk);
            for row in rows {
                let row = row.unwrap();
                let parent = owner.person_at.get(row.manager_id.unwrap()).unwrap() as usize;
                if parent >= found.len() {
                    found.resize_with(parent + 1, Vec::new);
                }
                found[parent].push(owner.person(row));
            }
        }
        for p in roots {
            let at = owner.person_at.get(p.id).unwrap() as usize;
            let mut list = found.get_mut(at).map(std::mem::take).unwrap_or_default();
            list.sort_unstable_by_key(|r| r.id);
            let _ = p.reports.set(list);
        }
    }

    pub fn reports_of_first_tenth(conn: &mut Conn, n: usize) -> Results {
        let mut owner = Owner::default();
        let roots = people(conn, &mut owner, Some((n / 10) as i32));
        reports(conn, &mut owner, &roots);
        Results { owner: Arc::new(owner), roots }
    }

    pub fn reports_sum(r: &Results) -> u64 {
        r.roots
            .iter()
            .map(|p| {
                person_sum(p.id, &p.firstname)
                    + p.reports
                        .get()
                        .unwrap()
                        .iter()
                        .map(|c| person_sum(c.id, &c.firstname))
                        .sum::<u64>()
            })
            .sum()
    }

    pub fn projects(conn: &mut Conn) -> Results {
        let mut owner = Owner::default();
        let roots = people(conn, &mut owner, None);
        let mut found: Vec<Vec<Arc<OProject>>> = Vec::new();
        for chunk in ids(&roots).chunks(CHUNK) {
            let rows = rows_of::projects_of(conn, chunk);
            for row in rows {
                let (person, project) = row.unwrap();
                let parent = owner.person_at.get(person).unwrap() as usize;
                if parent >= found.len() {
                    found.resize_with(parent + 1, Vec::new);
                }
                found[parent].push(owner.project(project));
            }
        }
        for p in &roots {
            let at = owner.person_at.get(p.id).unwrap() as usize;
            let mut list = found.get_mut(at).map(std::mem::take).unwrap_or_default();
            list.sort_unstable_by_key(|t| t.id);
            let _ = p.projects.set(list);
        }
        Results { owner: Arc::new(owner), roots }
    }

    pub fn projects_sum(r: &Results) -> u64 {
        r.roots
            .iter()
            .map(|p| {
                person_sum(p.id, &p.firstname)
                    + p.projects
                        .get()
                        .unwrap()
                        .iter()
                        .map(|t| project_sum(t.id, &t.name))
                        .sum::<u64>()
            })
            .sum()
    }

    pub fn both_directions(conn: &mut Conn) -> Results {
        let mut owner = Owner::default();
        let rows = rows_of::people_with_managers(conn);
        let mut roots = Vec::new();
        for row in rows {
            let (person, boss) = row.unwrap();
            let boss = boss.map(|b| owner.person(b));
            let p = owner.person(person);
            let _ = p.manager.set(boss);
            roots.push(p);
        }
        reports(conn, &mut owner, &roots);
        Results { owner: Arc::new(owner), roots }
    }
}

// ---------------------------------------------------------------------------------------------
// The arena as docs/design.md proposes it: stable storage shared by handles, pointer slots.

mod store {
    use std::ptr;
    use std::sync::atomic::{AtomicPtr, Ordering};
    use std::sync::Mutex;

    use super::*;

    /// A to-one slot: null until loaded, then [`One::NONE`] or a pointer into the same graph.
    pub struct One<T>(AtomicPtr<T>);

    impl<T> One<T> {
        fn none() -> *mut T {
            // Any address no object of the graph can have: a dangling, aligned one.
            ptr::NonNull::<T>::dangling().as_ptr()
        }

        fn unloaded() -> Self {
            One(AtomicPtr::new(ptr::null_mut()))
        }

        /// Fills the slot once.
        pub fn fill(&self, target: Option<&T>) {
            let target = target.map_or(Self::none(), |t| ptr::from_ref(t).cast_mut());
            let _ = self.0.compare_exchange(
                ptr::null_mut(),
                target,
                Ordering::Release,
                Ordering::Relaxed,
            );
        }

        pub fn get(&self) -> Option<Option<&T>> {
            let p = self.0.load(Ordering::Acquire);
            if p.is_null() {
                None
            } else if p == Self::none() {
                Some(None)
            } else {
                // SAFETY: a filled slot points into the graph that holds this object (a relation
                // never leaves its graph), whose storage never moves or frees an object while the
                // graph lives; `&self` is borrowed from a handle that keeps the graph alive.
                Some(Some(unsafe { &*p }))
            }
        }
    }

    /// A pointer into a graph, for collections.
    pub struct Ptr<T>(*const T);

    // SAFETY: a `Ptr` is a shared reference into a graph that is `Sync`; it is read only while a
    // handle keeps that graph alive (see `One::get`).
    unsafe impl<T: Sync> Send for Ptr<T> {}
    // SAFETY: as above.
    unsafe impl<T: Sync> Sync for Ptr<T> {}

    /// A collection slot.
    pub struct Many<T>(OnceLock<Box<[Ptr<T>]>>);

    impl<T> Many<T> {
        pub fn fill(&self, targets: Vec<&T>) {
            let _ = self.0.set(targets.into_iter().map(|t| Ptr(ptr::from_ref(t))).collect());
        }

        pub fn get(&self) -> Option<impl Iterator<Item = &T>> {
            // SAFETY: as in `One::get`.
            self.0.get().map(|ts| ts.iter().map(|t| unsafe { &*t.0 }))
        }
    }

    pub struct SPerson {
        pub id: i32,
        pub firstname: String,
        pub lastname: String,
        pub address_id: Option<i32>,
        pub manager_id: Option<i32>,
        pub address: One<SAddress>,
        pub manager: One<SPerson>,
        pub reports: Many<SPerson>,
        pub projects: Many<SProject>,
    }

    pub struct SAddress {
        pub id: i32,
        pub street: String,
        pub city: String,
    }

    pub struct SProject {
        pub id: i32,
        pub name: String,
    }

    #[derive(Default)]
    struct Keys {
        people: Slots,
        addresses: Slots,
    }

    /// A session's graph: objects appended, never moved, freed with the graph.
    #[derive(Default)]
    pub struct Graph {
        people: boxcar::Vec<SPerson>,
        addresses: boxcar::Vec<SAddress>,
        keys: Mutex<Keys>,
    }

    /// An owned handle: the graph and one object in it.
    pub struct Handle {
        graph: Arc<Graph>,
        person: *const SPerson,
    }

    // SAFETY: a handle is an `Arc` of a `Sync` graph and a shared reference into it.
    unsafe impl Send for Handle {}
    // SAFETY: as above.
    unsafe impl Sync for Handle {}

    impl std::ops::Deref for Handle {
        type Target = SPerson;

        fn deref(&self) -> &SPerson {
            // SAFETY: `person` points into `graph`, which this handle keeps alive.
            unsafe { &*self.person }
        }
    }

    impl Graph {
        /// The person of `row`'s key, appended if the graph has none (`keys` locked by the
        /// caller for the whole statement).
        fn person<'g>(&'g self, keys: &mut Keys, row: PersonRow) -> &'g SPerson {
            let people = &self.people;
            let (i, _) = keys.people.get_or_insert(row.id, || {
                people.push(SPerson {
                    id: row.id,
                    firstname: row.firstname,
                    lastname: row.lastname,
                    address_id: row.address_id,
                    manager_id: row.manager_id,
                    address: One::unloaded(),
                    manager: One::unloaded(),
                    reports: Many(OnceLock::new()),
                    projects: Many(OnceLock::new()),
                }) as u32
            });
            &self.people[i as usize]
        }

        fn address<'g>(&'g self, keys: &mut Keys, row: AddressRow) -> &'g SAddress {
            let addresses = &self.addresses;
            let (i, _) = keys.addresses.get_or_insert(row.id, || {
                addresses.push(SAddress { id: row.id, street: row.street, city: row.city }) as u32
            });
            &self.addresses[i as usize]
        }

        fn handle(self: &Arc<Self>, person: &SPerson) -> Handle {
            Handle { graph: Arc::clone(self), person: ptr::from_ref(person) }
        }
    }

    pub fn decode(conn: &mut Conn, graph: &Arc<Graph>) -> Vec<Handle> {
        let rows = rows_of::people_with_addresses(conn);
        let mut keys = graph.keys.lock().unwrap();
        let mut roots = Vec::new();
        for row in rows {
            let (person, address) = row.unwrap();
            let address = address.map(|a| graph.address(&mut keys, a));
            let p = graph.person(&mut keys, person);
            p.address.fill(address);
            roots.push(graph.handle(p));
        }
        roots
    }

    pub fn decode_sum(people: &[Handle]) -> u64 {
        people
            .iter()
            .map(|p| {
                let address = p.address.get().unwrap().map(|a| (a.id, a.city.as_str()));
                person_sum(p.id, &p.firstname) + address_sum(address)
            })
            .sum()
    }

    fn parents(conn: &mut Conn, graph: &Arc<Graph>, n: usize) -> Vec<Handle> {
        let rows = rows_of::people_up_to(conn, (n / 10) as i32);
        let mut keys = graph.keys.lock().unwrap();
        rows.map(|row| {
            let p = graph.person(&mut keys, row.unwrap());
            graph.handle(p)
        })
        .collect()
    }

    /// `selectin` of the reports of the first tenth: pointers grouped per parent.
    pub fn selectin_reports(conn: &mut Conn, graph: &Arc<Graph>, n: usize) -> Vec<Handle> {
        let roots = parents(conn, graph, n);
        let mut ids: Vec<i32> = roots.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        let mut found: Vec<Vec<&SPerson>> = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let rows = rows_of::reports_of(conn, chunk);
            let mut keys = graph.keys.lock().unwrap();
            for row in rows {
                let row = row.unwrap();
                let parent = keys.people.get(row.manager_id.unwrap()).unwrap() as usize;
                if parent >= found.len() {
                    found.resize_with(parent + 1, Vec::new);
                }
                found[parent].push(graph.person(&mut keys, row));
            }
        }
        let keys = graph.keys.lock().unwrap();
        for p in &roots {
            let at = keys.people.get(p.id).unwrap() as usize;
            let mut list = found.get_mut(at).map(std::mem::take).unwrap_or_default();
            list.sort_unstable_by_key(|r| r.id);
            p.reports.fill(list);
        }
        roots
    }

    /// The N+1 loop: one statement per parent, each appending to the shared graph.
    pub fn lazy_reports(conn: &mut Conn, graph: &Arc<Graph>, n: usize) -> Vec<Handle> {
        let roots = parents(conn, graph, n);
        for p in &roots {
            let rows = rows_of::reports_of_one(conn, p.id);
            let mut keys = p.graph.keys.lock().unwrap();
            let mut list: Vec<&SPerson> =
                rows.map(|r| p.graph.person(&mut keys, r.unwrap())).collect();
            list.sort_unstable_by_key(|r| r.id);
            p.reports.fill(list);
        }
        roots
    }

    pub fn reports_sum(people: &[Handle]) -> u64 {
        people
            .iter()
            .map(|p| {
                person_sum(p.id, &p.firstname)
                    + p.reports.get().unwrap().map(|r| person_sum(r.id, &r.firstname)).sum::<u64>()
            })
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// The harness.

/// Live heap growth over `rounds` of `load` then drop, after one warm-up round.
fn growth(rounds: usize, mut load: impl FnMut()) -> isize {
    load();
    let before = LIVE.load(Ordering::Relaxed) as isize;
    for _ in 0..rounds {
        load();
    }
    LIVE.load(Ordering::Relaxed) as isize - before
}

fn orm_both_directions(conn: &mut Conn) {
    let mut session = Session::new(conn);
    let people = Person::query()
        .order_by(person::id)
        .options((selectin(Person::reports), joined(Person::manager)))
        .load(&mut session)
        .unwrap();
    black_box(&people);
}

/// A run that loads a graph and returns its checksum.
type Sum<'a> = Box<dyn Fn(&mut Conn) -> u64 + 'a>;

/// A timed group of named runs; each run's result is dropped inside the timing.
fn group(c: &mut Criterion, name: &str, n: usize, runs: Vec<(&str, Sum<'_>)>, conn: &mut Conn) {
    let sums: Vec<u64> = runs.iter().map(|(_, run)| run(conn)).collect();
    assert!(sums.windows(2).all(|w| w[0] == w[1]), "{name} at {n}: checksums differ: {sums:?}");
    let mut group = c.benchmark_group(format!("ownership-{name}"));
    group.sample_size(if n >= 100_000 { 10 } else { 20 });
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(if n >= 100_000 { 6 } else { 3 }));
    for (label, run) in &runs {
        group.bench_with_input(BenchmarkId::new(*label, n), &n, |b, _| {
            b.iter(|| black_box(run(conn)))
        });
    }
    group.finish();
}

/// Dropping a chain of 1,000,000 managers, built outside the timing: the arena, the ORM's
/// `Arc`s (held by the last person alone) and hand-written rows with manager indices.
fn drop_chain(c: &mut Criterion) {
    let levels = 1_000_000;
    let mut conn = orm_tests::sqlite::chain(levels);
    let mut group = c.benchmark_group("ownership-drop-chain");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(10));
    group.bench_with_input(BenchmarkId::new("arena", levels), &levels, |b, _| {
        b.iter_batched(|| arena::chain(&mut conn), drop, criterion::BatchSize::PerIteration)
    });
    group.bench_with_input(BenchmarkId::new("orm", levels), &levels, |b, _| {
        b.iter_batched(|| orm_chain(&mut conn), drop, criterion::BatchSize::PerIteration)
    });
    group.bench_with_input(BenchmarkId::new("hand", levels), &levels, |b, _| {
        b.iter_batched(|| hand_chain(&mut conn), drop, criterion::BatchSize::PerIteration)
    });
    group.finish();
}

pub fn prototypes(c: &mut Criterion) {
    match std::env::var("ORM_BENCH_ONLY").as_deref() {
        Ok("ownership") => {}
        Ok("ownership-drop-chain") => return drop_chain(c),
        _ => return,
    }
    for n in sizes() {
        let (mut conn, _) = seeded(n);
        for (label, peak) in [
            ("orm", peak_heap(|| orm_decode(&mut conn)).0),
            ("hand", peak_heap(|| hand_decode(&mut conn)).0),
            ("arena", peak_heap(|| arena::decode_sum(&arena::decode(&mut conn))).0),
            ("owner", peak_heap(|| owner::decode_sum(&owner::decode(&mut conn))).0),
        ] {
            println!("peak heap, decode {n}: {label} {:.1} MiB", peak as f64 / 1048576.0);
        }
        group(
            c,
            "decode",
            n,
            vec![
                ("orm", Box::new(|c: &mut Conn| orm_decode(c).0)),
                ("hand", Box::new(|c: &mut Conn| hand_decode(c).0)),
                ("arena", Box::new(|c: &mut Conn| arena::decode_sum(&arena::decode(c)))),
                ("owner", Box::new(|c: &mut Conn| owner::decode_sum(&owner::decode(c)))),
                (
                    "store",
                    Box::new(|c: &mut Conn| {
                        store::decode_sum(&store::decode(c, &Default::default()))
                    }),
                ),
            ],
            &mut conn,
        );
        group(
            c,
            "selectin-reports",
            n,
            vec![
                (
                    "orm",
                    Box::new(move |c: &mut Conn| {
                        orm_reports(c, n, selectin(Person::reports), false).0
                    }),
                ),
                ("hand", Box::new(move |c: &mut Conn| hand_selectin_reports(c, n).0)),
                (
                    "arena",
                    Box::new(move |c: &mut Conn| {
                        arena::reports_sum(&arena::reports_of_first_tenth(c, n))
                    }),
                ),
                (
                    "owner",
                    Box::new(move |c: &mut Conn| {
                        owner::reports_sum(&owner::reports_of_first_tenth(c, n))
                    }),
                ),
                (
                    "store",
                    Box::new(move |c: &mut Conn| {
                        store::reports_sum(&store::selectin_reports(c, &Default::default(), n))
                    }),
                ),
            ],
            &mut conn,
        );
        group(
            c,
            "selectin-projects",
            n,
            vec![
                ("orm", Box::new(|c: &mut Conn| orm_projects(c, selectin(Person::projects)).0)),
                ("hand", Box::new(|c: &mut Conn| hand_selectin_projects(c).0)),
                ("arena", Box::new(|c: &mut Conn| arena::projects_sum(&arena::projects(c)))),
                ("owner", Box::new(|c: &mut Conn| owner::projects_sum(&owner::projects(c)))),
            ],
            &mut conn,
        );
        group(
            c,
            "lazy-reports",
            n,
            vec![
                ("orm", Box::new(move |c: &mut Conn| orm_reports(c, n, (), true).0)),
                ("hand", Box::new(move |c: &mut Conn| hand_lazy_reports(c, n).0)),
                (
                    "store",
                    Box::new(move |c: &mut Conn| {
                        store::reports_sum(&store::lazy_reports(c, &Default::default(), n))
                    }),
                ),
            ],
            &mut conn,
        );
        // Last: the ORM's rounds leak, and a heap full of leaked blocks slows what runs after.
        let leak_rounds = (200_000 / n).clamp(2, 20);
        for (label, bytes) in [
            ("arena", growth(leak_rounds, || drop(arena::both_directions(&mut conn)))),
            ("owner", growth(leak_rounds, || drop(owner::both_directions(&mut conn)))),
            ("orm", growth(leak_rounds, || orm_both_directions(&mut conn))),
        ] {
            let line = format!(
                "leak loop, {n} people, manager and reports, {leak_rounds} rounds: {label} live heap {:+.1} KiB per round",
                bytes as f64 / leak_rounds as f64 / 1024.0
            );
            println!("{line}");
        }
    }
}
