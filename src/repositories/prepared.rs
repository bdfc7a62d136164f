//! Hot `UPDATE`s as statements of fixed SQL text, which Diesel keeps
//! prepared.
//!
//! Diesel never keeps an `UPDATE` (or a [`diesel::sql_query`]) in its
//! statement cache: an update's SQL may depend on its values (a derived
//! changeset skips `None` fields), so it is prepared on every execution,
//! which on SQLite costs a parse and on PostgreSQL a round trip of its
//! own. Marking the statement cacheable does not help through
//! [`AnyConnection`](crate::db::AnyConnection): the connection hands the
//! cache a reference to the statement, and Diesel's `QueryFragment` for a
//! reference asks the statement's parts, not the statement, whether it may
//! be cached, and the `UPDATE` says no. (A profile of the step-up showed
//! the passkey's compare-and-set parsed on every assertion that way.)
//!
//! [`Fixed`] is a statement of constant text whose `?`s take its binds in
//! order, each rendered as its backend's placeholder (`?` on SQLite, `$n`
//! on PostgreSQL). It never says it may not be cached, so the cache keeps
//! it, keyed by its text. Its columns are checked by the tests that run
//! each statement on both backends.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::{Connection, QueryResult, RunQueryDsl};

/// `sql` with `binds` (a tuple of bound values, `value.into_sql::<T>()`)
/// in place of its `?`s, in order.
pub struct Fixed<B> {
    sql: &'static str,
    binds: B,
}

impl<B> Fixed<B> {
    pub fn new(sql: &'static str, binds: B) -> Self {
        Fixed { sql, binds }
    }
}

/// Binds that walk themselves between the parts of a statement's text.
pub trait Binds<DB: Backend> {
    fn walk<'b>(
        &'b self,
        parts: &mut std::str::Split<'static, char>,
        pass: &mut AstPass<'_, 'b, DB>,
    ) -> QueryResult<()>;
}

/// A statement whose `?`s and binds do not pair up: an error, not SQL.
fn miscounted() -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(
        "a fixed statement's `?`s and binds differ in number".into(),
    )
}

macro_rules! binds_for_tuple {
    ($($name:ident),+) => {
        impl<DB: Backend, $($name: QueryFragment<DB>),+> Binds<DB> for ($($name,)+) {
            #[allow(non_snake_case)]
            fn walk<'b>(
                &'b self,
                parts: &mut std::str::Split<'static, char>,
                pass: &mut AstPass<'_, 'b, DB>,
            ) -> QueryResult<()> {
                let ($($name,)+) = self;
                $(
                    pass.push_sql(parts.next().ok_or_else(miscounted)?);
                    $name.walk_ast(pass.reborrow())?;
                )+
                Ok(())
            }
        }
    };
}

/// No binds: a statement of constant text alone.
impl<DB: Backend> Binds<DB> for () {
    fn walk<'b>(
        &'b self,
        _: &mut std::str::Split<'static, char>,
        _: &mut AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        Ok(())
    }
}

binds_for_tuple!(A);
binds_for_tuple!(A, B);
binds_for_tuple!(A, B, C);
binds_for_tuple!(A, B, C, D);
binds_for_tuple!(A, B, C, D, E);
binds_for_tuple!(A, B, C, D, E, F);
binds_for_tuple!(A, B, C, D, E, F, G);
binds_for_tuple!(A, B, C, D, E, F, G, H);

impl<B, DB> QueryFragment<DB> for Fixed<B>
where
    DB: Backend,
    B: Binds<DB>,
{
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let mut parts = self.sql.split('?');
        self.binds.walk(&mut parts, &mut pass)?;
        // The text after the last `?`; a `?` too many is an error, not SQL.
        pass.push_sql(parts.next().ok_or_else(miscounted)?);
        if parts.next().is_some() {
            return Err(miscounted());
        }
        Ok(())
    }
}

/// No static id: the cache keys the statement by its text.
impl<B> QueryId for Fixed<B> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<B, Conn> RunQueryDsl<Conn> for Fixed<B> {}

/// Runs `body` in a transaction whose `BEGIN`, `COMMIT` and `ROLLBACK` are
/// statements the cache keeps, for the hot writes: Diesel's own
/// transactions run each as a new statement (on SQLite, a parse of its
/// own every time). `body` must not open a transaction of its own, since
/// Diesel does not know of this one.
///
/// A failed `body` or `COMMIT` is rolled back, and so is a panicking
/// `body`; a connection whose `ROLLBACK` fails (its transaction may still
/// be open) is reported as [`diesel::result::Error::BrokenTransactionManager`],
/// which the pool takes as a lost connection and replaces.
pub fn transaction<C, T, E>(conn: &mut C, body: impl FnOnce(&mut C) -> Result<T, E>) -> Result<T, E>
where
    C: Connection,
    E: From<diesel::result::Error>,
{
    Fixed::new("BEGIN", ()).execute(conn)?;
    let mut open = Open {
        conn,
        finished: false,
    };
    let outcome = body(&mut *open.conn).and_then(|value| {
        Fixed::new("COMMIT", ())
            .execute(&mut *open.conn)
            .map(|_| value)
            .map_err(E::from)
    });
    open.finished = true;
    if outcome.is_err() {
        rollback(open.conn)?;
    }
    outcome
}

fn rollback<C: Connection>(conn: &mut C) -> Result<(), diesel::result::Error> {
    Fixed::new("ROLLBACK", ())
        .execute(conn)
        .map(|_| ())
        .map_err(|_| diesel::result::Error::BrokenTransactionManager)
}

/// The connection of an open [`transaction`]: rolled back if dropped
/// before the transaction finished (a panic in its body).
struct Open<'c, C: Connection> {
    conn: &'c mut C,
    finished: bool,
}

impl<C: Connection> Drop for Open<'_, C> {
    fn drop(&mut self) {
        if !self.finished {
            let _ = rollback(self.conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
    use diesel::prelude::*;
    use diesel::sql_types::Integer;
    use diesel::sqlite::SqliteConnection;

    use super::*;
    use crate::db::AnyConnection;

    diesel::table! {
        counters (id) {
            id -> Integer,
            value -> Integer,
        }
    }

    /// Counts the statements a connection puts in its statement cache.
    #[derive(Clone, Default)]
    struct CacheInserts(Arc<AtomicUsize>);

    impl CacheInserts {
        fn get(&self) -> usize {
            self.0.load(Ordering::Relaxed)
        }
    }

    impl Instrumentation for CacheInserts {
        fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
            if let InstrumentationEvent::CacheQuery { .. } = event {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn counters_db(inserts: &CacheInserts) -> AnyConnection {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        conn.batch_execute(
            "CREATE TABLE counters (id INTEGER PRIMARY KEY, value INTEGER NOT NULL);
             INSERT INTO counters VALUES (1, 0);",
        )
        .unwrap();
        conn.set_instrumentation(inserts.clone());
        AnyConnection::Sqlite(conn)
    }

    const COMPARE_AND_SET: &str = "UPDATE counters SET value = ? WHERE value = ?";

    fn compare_and_set(conn: &mut AnyConnection, n: i32) -> usize {
        Fixed::new(
            COMPARE_AND_SET,
            ((n + 1).into_sql::<Integer>(), n.into_sql::<Integer>()),
        )
        .execute(conn)
        .unwrap()
    }

    #[test]
    fn a_fixed_update_is_prepared_once_through_the_multi_backend_connection() {
        let inserts = CacheInserts::default();
        let mut conn = counters_db(&inserts);
        // The same statement, run again from the cache with other binds:
        // each compare-and-set sees the value the last one left.
        for n in 0..5 {
            assert_eq!(compare_and_set(&mut conn, n), 1, "round {n}");
        }
        assert_eq!(
            compare_and_set(&mut conn, 2),
            0,
            "a stale compare-and-set changes nothing"
        );
        assert_eq!(inserts.get(), 1, "prepared once, then run from the cache");
        let value: i32 = counters::table
            .select(counters::value)
            .first(&mut conn)
            .unwrap();
        assert_eq!(value, 5);
    }

    #[test]
    fn a_query_builder_update_is_prepared_every_time() {
        // Why the hot updates are fixed text: the same update from the
        // query builder, even marked cacheable, is never cached.
        struct Cacheable<Q>(Q);
        impl<Q: QueryFragment<DB>, DB: Backend> QueryFragment<DB> for Cacheable<Q> {
            fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
                self.0.walk_ast(pass)
            }
            fn is_safe_to_cache_prepared(&self, _: &DB) -> QueryResult<bool> {
                Ok(true)
            }
        }
        impl<Q> QueryId for Cacheable<Q> {
            type QueryId = ();
            const HAS_STATIC_QUERY_ID: bool = false;
        }
        let inserts = CacheInserts::default();
        let mut conn = counters_db(&inserts);
        for n in 0..3 {
            let update = diesel::update(counters::table.filter(counters::value.eq(n)))
                .set(counters::value.eq(n + 1));
            assert_eq!(conn.execute_returning_count(&Cacheable(update)).unwrap(), 1);
        }
        assert_eq!(inserts.get(), 0);
    }

    #[test]
    fn binds_take_the_places_of_the_question_marks_in_order() {
        let update = Fixed::new(
            COMPARE_AND_SET,
            (7.into_sql::<Integer>(), 6.into_sql::<Integer>()),
        );
        let sql = diesel::debug_query::<diesel::sqlite::Sqlite, _>(&update).to_string();
        assert_eq!(
            sql,
            "UPDATE counters SET value = ? WHERE value = ? -- binds: [7, 6]"
        );
        let pg = diesel::debug_query::<diesel::pg::Pg, _>(&update).to_string();
        assert_eq!(
            pg,
            "UPDATE counters SET value = $1 WHERE value = $2 -- binds: [7, 6]"
        );
        let mut conn = counters_db(&CacheInserts::default());
        let too_few_binds = Fixed::new(COMPARE_AND_SET, (7.into_sql::<Integer>(),));
        assert!(too_few_binds.execute(&mut conn).is_err());
        let too_many_binds = Fixed::new(
            COMPARE_AND_SET,
            (
                7.into_sql::<Integer>(),
                6.into_sql::<Integer>(),
                5.into_sql::<Integer>(),
            ),
        );
        assert!(too_many_binds.execute(&mut conn).is_err());
    }

    fn value_of(conn: &mut AnyConnection) -> i32 {
        counters::table.select(counters::value).first(conn).unwrap()
    }

    #[test]
    fn a_fixed_transaction_commits_and_keeps_its_statements_prepared() {
        let inserts = CacheInserts::default();
        let mut conn = counters_db(&inserts);
        for n in 0..3 {
            let changed = transaction(&mut conn, |conn| {
                Ok::<_, diesel::result::Error>(compare_and_set(conn, n))
            })
            .unwrap();
            assert_eq!(changed, 1);
        }
        // BEGIN, the update and COMMIT, each prepared once.
        assert_eq!(inserts.get(), 3);
        assert_eq!(value_of(&mut conn), 3);
    }

    #[test]
    fn a_failing_body_is_rolled_back_and_the_connection_goes_on() {
        let mut conn = counters_db(&CacheInserts::default());
        let failed = transaction(&mut conn, |conn| {
            compare_and_set(conn, 0);
            Err::<(), _>(diesel::result::Error::RollbackTransaction)
        });
        assert!(matches!(
            failed,
            Err(diesel::result::Error::RollbackTransaction)
        ));
        assert_eq!(value_of(&mut conn), 0, "the update was rolled back");
        transaction(&mut conn, |conn| {
            Ok::<_, diesel::result::Error>(compare_and_set(conn, 0))
        })
        .unwrap();
        assert_eq!(value_of(&mut conn), 1);
    }

    #[test]
    fn a_panicking_body_is_rolled_back() {
        let mut conn = counters_db(&CacheInserts::default());
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = transaction(&mut conn, |conn| {
                compare_and_set(conn, 0);
                if value_of(conn) == 1 {
                    panic!("a body that panics");
                }
                Ok::<_, diesel::result::Error>(())
            });
        }));
        assert!(panicked.is_err());
        assert_eq!(value_of(&mut conn), 0, "the update was rolled back");
        // No transaction was left open: a new one begins.
        transaction(&mut conn, |conn| {
            Ok::<_, diesel::result::Error>(compare_and_set(conn, 0))
        })
        .unwrap();
        assert_eq!(value_of(&mut conn), 1);
    }
}
