//! Statement counting and SQL echo: diesel's instrumentation on the session's connection records
//! every statement; each one is also a `tracing` event (target `orm_core::sql`, level `DEBUG`),
//! silent unless a subscriber listens.

use std::collections::VecDeque;
use std::fmt::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use diesel::connection::{Connection, InstrumentationEvent};

/// One statement the session ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The SQL text, with placeholders, followed by diesel's ` -- binds: [..]` list (cut after
    /// 16 KiB, ending in ` ...`).
    pub sql: String,
    /// The number of bound parameters.
    pub binds: usize,
    /// `BEGIN`, `COMMIT`, `ROLLBACK` and savepoint statements: not counted by
    /// [`Session::statements`](crate::Session::statements).
    pub transaction_control: bool,
    /// How long the database took (until diesel finished the statement).
    pub duration: Option<Duration>,
    /// Rows read, for the statements the ORM ran itself.
    pub rows: Option<usize>,
    /// What ran it: a query (`Person query`), a relation load (`Person.address selectin`), or
    /// `connection` for statements run on the connection directly.
    pub cause: String,
    /// The database's error, if the statement failed.
    pub error: Option<String>,
}

impl Statement {
    /// A statement as it starts.
    fn new(sql: String, transaction_control: bool, cause: String) -> Self {
        Statement {
            binds: binds_in(&sql),
            sql,
            transaction_control,
            duration: None,
            rows: None,
            cause,
            error: None,
        }
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}", self.sql, self.cause)?;
        if let Some(rows) = self.rows {
            write!(f, ", {rows} rows")?;
        }
        if let Some(duration) = self.duration {
            write!(f, ", {:.3} ms", duration.as_secs_f64() * 1e3)?;
        }
        f.write_str("]")
    }
}

/// What runs the next statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    Query(&'static str),
    Selectin(&'static str, &'static str),
    Lazy(&'static str, &'static str),
    Count(&'static str, &'static str),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Query(model) => write!(f, "{model} query"),
            Cause::Selectin(model, relation) => write!(f, "{model}.{relation} selectin"),
            Cause::Lazy(model, relation) => write!(f, "{model}.{relation} lazy load"),
            Cause::Count(model, relation) => write!(f, "{model}.{relation} count"),
        }
    }
}

/// Renders the SQL of a statement the loader ran, when the log is first read.
pub(crate) type Render = Box<dyn Fn() -> String + Send>;

/// How many statements a session's log keeps unless told otherwise (Django keeps 9,000).
pub(crate) const DEFAULT_LOG_LIMIT: usize = 10_000;

/// How many bytes a session's log keeps unless told otherwise.
pub(crate) const DEFAULT_LOG_BYTES: usize = 512 << 10;

/// What a deferred entry is counted as until it is rendered: a lazy load's statement and its
/// closure (the loader defers only statements with a few keys).
const DEFERRED_BYTES: usize = 512;

/// One statement in the log.
struct Entry {
    statement: Statement,
    /// A loader's statement whose SQL and cause are rendered when the log is read: rendering
    /// it as it runs cost more than a lazy load's own statement building.
    deferred: Option<(Cause, Render)>,
}

impl Entry {
    /// Renders the statement if it was deferred.
    fn render(&mut self) {
        if let Some((cause, render)) = self.deferred.take() {
            let sql = logged_sql(render());
            self.statement.binds = binds_in(&sql);
            self.statement.sql = sql;
            self.statement.cause = cause.to_string();
        }
    }

    /// The memory it holds, as the log counts it.
    fn bytes(&self) -> usize {
        let statement = &self.statement;
        std::mem::size_of::<Entry>()
            + statement.sql.capacity()
            + statement.cause.capacity()
            + statement.error.as_ref().map_or(0, String::capacity)
            + if self.deferred.is_some() { DEFERRED_BYTES } else { 0 }
    }
}

/// The statements a session ran: the last [`Log::limit`] of them within [`Log::byte_limit`], and
/// exact counts of all.
pub(crate) struct Log {
    entries: VecDeque<Entry>,
    /// What the entries hold (see [`Entry::bytes`]).
    bytes: usize,
    /// How many bytes are kept (the latest statement always is): an entry limit alone keeps
    /// 10,000 statements of up to 16 KiB each.
    byte_limit: usize,
    /// Statements recorded since the last [`Log::clear`], the ones no longer kept included: the
    /// sequence number of the next one.
    recorded: usize,
    /// How many statements are kept (at least the latest one): a session that runs an N+1 loop
    /// over 100,000 rows must not keep 100,000 entries.
    limit: usize,
    pub(crate) queries: usize,
    started: Option<Instant>,
    /// Set while the loader runs a statement: it echoes the statement itself, with its rows.
    loader: Option<Cause>,
    /// The loader's renderer for its next statement.
    next_render: Option<Render>,
    /// Whether statements are `tracing` events (on unless turned off, for measuring).
    pub(crate) quiet: bool,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            entries: VecDeque::new(),
            bytes: 0,
            byte_limit: DEFAULT_LOG_BYTES,
            recorded: 0,
            limit: DEFAULT_LOG_LIMIT,
            queries: 0,
            started: None,
            loader: None,
            next_render: None,
            quiet: false,
        }
    }
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("kept", &self.entries.len())
            .field("bytes", &self.bytes)
            .field("recorded", &self.recorded)
            .field("queries", &self.queries)
            .finish_non_exhaustive()
    }
}

impl Log {
    /// The statements kept, rendered.
    pub(crate) fn statements(&mut self) -> impl Iterator<Item = &Statement> {
        self.render_from(0);
        self.entries.iter().map(|e| &e.statement)
    }

    /// Renders the deferred entries from position `first` on, counting what they hold now.
    fn render_from(&mut self, first: usize) {
        for entry in self.entries.iter_mut().skip(first).filter(|e| e.deferred.is_some()) {
            self.bytes -= entry.bytes();
            entry.render();
            self.bytes += entry.bytes();
        }
    }

    /// The sequence number the next statement gets (see [`Log::since`]).
    pub(crate) fn mark(&self) -> usize {
        self.recorded
    }

    /// The statements from sequence number `mark` on that are still kept, rendered, and how
    /// many of them are no longer kept.
    pub(crate) fn since(&mut self, mark: usize) -> (usize, impl Iterator<Item = &Statement>) {
        let first_kept = self.recorded - self.entries.len();
        let skip = mark.saturating_sub(first_kept).min(self.entries.len());
        let dropped = first_kept.saturating_sub(mark);
        self.render_from(skip);
        (dropped, self.entries.iter().skip(skip).map(|e| &e.statement))
    }

    /// The latest statement, rendered.
    pub(crate) fn last(&mut self) -> Option<&Statement> {
        self.render_from(self.entries.len().saturating_sub(1));
        self.entries.back().map(|e| &e.statement)
    }

    /// Keeps the last `limit` statements from now on (at least one).
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit.max(1);
        self.trim();
    }

    /// Keeps at most `bytes` of statements from now on (and the latest statement, whatever its
    /// size).
    pub(crate) fn set_byte_limit(&mut self, bytes: usize) {
        self.byte_limit = bytes;
        self.trim();
    }

    /// Forgets every statement.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.recorded = 0;
        self.queries = 0;
    }

    fn push(&mut self, statement: Statement, deferred: Option<(Cause, Render)>) {
        self.queries += usize::from(!statement.transaction_control);
        self.recorded += 1;
        let entry = Entry { statement, deferred };
        self.bytes += entry.bytes();
        self.entries.push_back(entry);
        self.trim();
        self.started = Some(Instant::now());
    }

    /// Drops the oldest statements past either limit.
    fn trim(&mut self) {
        while self.entries.len() > self.limit
            || (self.bytes > self.byte_limit && self.entries.len() > 1)
        {
            match self.entries.pop_front() {
                Some(entry) => self.bytes -= entry.bytes(),
                None => break,
            }
        }
    }
}

/// The statement log shared with the connection's instrumentation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorder(Arc<Mutex<Log>>);

impl Recorder {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Log> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attaches the recorder to `conn`.
    pub(crate) fn attach<C: Connection>(&self, conn: &mut C) {
        let recorder = self.clone();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| match event {
            InstrumentationEvent::StartQuery { query, .. } => recorder.start(query),
            InstrumentationEvent::FinishQuery { error, .. } => {
                recorder.finish(error.map(ToString::to_string));
            }
            _ => {}
        });
    }

    /// Records a statement as it starts. The loader's statements are rendered (SQL, binds and
    /// cause) when the log is read: one lock and no formatting per lazy load.
    fn start(&self, query: &dyn fmt::Display) {
        let mut log = self.lock();
        if let (Some(render), Some(cause)) = (log.next_render.take(), log.loader) {
            log.push(Statement::new(String::new(), false, String::new()), Some((cause, render)));
            return;
        }
        drop(log);
        let sql = logged_sql(query);
        let transaction_control = is_transaction_control(&sql);
        let mut log = self.lock();
        let cause = match log.loader {
            Some(cause) => cause.to_string(),
            None if transaction_control => "transaction".to_owned(),
            None => "connection".to_owned(),
        };
        log.push(Statement::new(sql, transaction_control, cause), None);
    }

    fn finish(&self, error: Option<String>) {
        let mut log = self.lock();
        let elapsed = log.started.take().map(|t| t.elapsed());
        let echoes = log.loader.is_none() && !log.quiet;
        if let Some(last) = log.entries.back_mut() {
            last.statement.duration = elapsed;
            let added = error.as_ref().map_or(0, String::capacity);
            last.statement.error = error;
            log.bytes += added;
        }
        if echoes {
            if let Some(last) = log.last() {
                echo(last);
            }
        }
    }

    /// The loader runs the next statement for `cause`; `render` renders its SQL on demand
    /// (otherwise it is rendered as it runs). The statement is the loader's until the returned
    /// [`Fetching`] is finished or dropped (on unwind).
    pub(crate) fn fetch(&self, cause: Cause, render: Option<Render>) -> Fetching {
        let mut log = self.lock();
        log.loader = Some(cause);
        log.next_render = render;
        drop(log);
        Fetching(Some(self.clone()))
    }

    /// The loader's statement read `rows` rows (`None` when it failed).
    fn end_fetch(&self, rows: Option<usize>) {
        let mut log = self.lock();
        log.loader = None;
        log.next_render = None;
        if let Some(last) = log.entries.back_mut() {
            last.statement.rows = rows;
        }
        if !log.quiet && tracing::enabled!(target: "orm_core::sql", tracing::Level::DEBUG) {
            if let Some(last) = log.last() {
                echo(last);
            }
        }
    }
}

/// A statement the loader is running (see [`Recorder::fetch`]): later statements are not the
/// loader's once it is finished, or dropped by a panic mid-decode.
pub(crate) struct Fetching(Option<Recorder>);

impl Fetching {
    /// The statement read `rows` rows (`None` when it failed).
    pub(crate) fn finish(mut self, rows: Option<usize>) {
        if let Some(recorder) = self.0.take() {
            recorder.end_fetch(rows);
        }
    }
}

impl Drop for Fetching {
    fn drop(&mut self) {
        if let Some(recorder) = self.0.take() {
            recorder.end_fetch(None);
        }
    }
}

/// `statement` (diesel's SQL ` -- binds: [..]` form) as the log keeps it: cut after
/// [`SQL_LOG_LIMIT`], formatting no further than that.
fn logged_sql(statement: impl fmt::Display) -> String {
    let mut sql = Capped { text: String::new(), cut: false };
    let rendered = write!(sql, "{statement}");
    match (sql.cut, rendered) {
        (true, _) => sql.text + " ...",
        (false, Ok(())) => sql.text,
        (false, Err(_)) => "(a statement that could not be rendered)".to_owned(),
    }
}

/// The bound parameters of a logged statement (its SQL part, before the bind list).
fn binds_in(sql: &str) -> usize {
    if sql.is_empty() {
        // A deferred statement, counted when rendered.
        return 0;
    }
    count_placeholders(sql.split(" -- binds: ").next().unwrap_or(""))
}

/// How much of a statement's text (SQL and bound values) the log keeps: formatting a 30,000-key
/// `IN` list in full would cost more than the statement.
const SQL_LOG_LIMIT: usize = 16 * 1024;

/// A `fmt::Write` that stops (with an error, so `Display` gives up early) past the limit.
struct Capped {
    text: String,
    /// Whether the text was cut (a multi-byte character may leave it a few bytes short).
    cut: bool,
}

impl Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = SQL_LOG_LIMIT.saturating_sub(self.text.len());
        if s.len() <= room {
            self.text.push_str(s);
            return Ok(());
        }
        let cut = (0..=room).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        self.text.push_str(&s[..cut]);
        self.cut = true;
        Err(fmt::Error)
    }
}

fn echo(statement: &Statement) {
    tracing::debug!(
        target: "orm_core::sql",
        sql = %statement.sql,
        binds = statement.binds,
        rows = statement.rows,
        duration_us = statement.duration.map(|d| d.as_micros() as u64),
        cause = %statement.cause,
        error = statement.error.as_deref(),
        "statement"
    );
}

fn is_transaction_control(sql: &str) -> bool {
    let mut words = sql.split_whitespace();
    let head = words.next().unwrap_or("");
    ["BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END"]
        .iter()
        .any(|kw| head.eq_ignore_ascii_case(kw))
        || (head.eq_ignore_ascii_case("SET")
            && words.next().is_some_and(|w| w.eq_ignore_ascii_case("TRANSACTION")))
}

/// Bound parameters in `sql`: `?` placeholders (SQLite) or the highest `$n` (PostgreSQL),
/// outside quoted identifiers and literals.
fn count_placeholders(sql: &str) -> usize {
    let mut question_marks = 0;
    let mut highest = 0;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' | '"' | '\'' => {
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
            }
            '?' => question_marks += 1,
            '$' => {
                let mut n = 0usize;
                // Saturating: `$99999999999999999999` is text to count, not a number to trust.
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    n = n.saturating_mul(10).saturating_add(d.to_digit(10).unwrap_or(0) as usize);
                }
                highest = highest.max(n);
            }
            _ => {}
        }
    }
    question_marks.max(highest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(count_placeholders("SELECT `a?` FROM t WHERE x = ? AND y IN (?, ?)"), 3);
        assert_eq!(count_placeholders(r#"SELECT "a$9" FROM t WHERE x = $1 AND y = ANY($2)"#), 2);
        assert_eq!(count_placeholders("BEGIN"), 0);
        assert_eq!(count_placeholders("SELECT 1 -- $99999999999999999999"), usize::MAX);
    }

    proptest::proptest! {
        /// No SQL text makes the log panic: placeholders, bind lists, the length cap and its cut
        /// on a character boundary.
        #[test]
        fn any_statement_text_is_logged(sql in ".*", digits in "[$?0-9'\"` ]{0,80}") {
            for text in [sql.clone(), digits.clone(), format!("{sql}{digits} -- binds: [{digits}]")] {
                let statement = Statement::new(logged_sql(&text), false, String::new());
                proptest::prop_assert!(statement.sql.len() <= SQL_LOG_LIMIT + 4);
                let mut log = Log::default();
                log.set_limit(1);
                log.push(statement, None);
                let _ = log.last().map(ToString::to_string);
            }
        }

        #[test]
        fn long_statements_are_cut_on_a_character_boundary(c in proptest::char::any(), n in 0usize..20_000) {
            let text: String = std::iter::repeat_n(c, n).collect();
            let logged = logged_sql(&text);
            match logged.strip_suffix(" ...") {
                Some(kept) => proptest::prop_assert!(text.len() > SQL_LOG_LIMIT && text.starts_with(kept)),
                None => proptest::prop_assert_eq!(logged, text),
            }
        }
    }
}
