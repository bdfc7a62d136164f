//! Statements Diesel would prepare again on every call, kept prepared.
//!
//! Diesel never keeps an `UPDATE` in its statement cache: an update's SQL
//! may depend on its values (a derived changeset skips `None` fields), so
//! it is prepared on every execution, which on SQLite costs a parse and
//! on PostgreSQL a round trip of its own. [`Prepared`] marks a statement
//! whose SQL depends only on its shape. The cache keys such statements by
//! their SQL text, so a statement whose text did vary would take another
//! entry, never another's prepared statement; wrap only statements of
//! fixed text (no derived changesets with `Option`s, no `IN` lists), or
//! the cache grows with each variant.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::{QueryResult, RunQueryDsl};

/// `statement`, kept in the connection's statement cache (see the module).
pub struct Prepared<Q>(pub Q);

impl<Q, DB> QueryFragment<DB> for Prepared<Q>
where
    DB: Backend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

/// No static id: the cache keys the statement by its SQL text.
impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q, Conn> RunQueryDsl<Conn> for Prepared<Q> {}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use diesel::sqlite::{Sqlite, SqliteConnection};

    use super::*;

    diesel::table! {
        counters (id) {
            id -> Integer,
            value -> Integer,
        }
    }

    #[test]
    fn a_prepared_update_is_cacheable_and_does_what_the_update_does() {
        let update = diesel::update(counters::table).set(counters::value.eq(1));
        assert!(!update.is_safe_to_cache_prepared(&Sqlite).unwrap());
        assert!(Prepared(update).is_safe_to_cache_prepared(&Sqlite).unwrap());

        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        conn.batch_execute("CREATE TABLE counters (id INTEGER PRIMARY KEY, value INTEGER NOT NULL); INSERT INTO counters VALUES (1, 0);")
            .unwrap();
        // The same statement, run again from the cache with other binds:
        // each compare-and-set sees the value the last one left.
        for n in 0..5 {
            let rows = Prepared(
                diesel::update(counters::table.filter(counters::value.eq(n)))
                    .set(counters::value.eq(n + 1)),
            )
            .execute(&mut conn)
            .unwrap();
            assert_eq!(rows, 1, "round {n}");
        }
        let stale = Prepared(
            diesel::update(counters::table.filter(counters::value.eq(2)))
                .set(counters::value.eq(3)),
        )
        .execute(&mut conn)
        .unwrap();
        assert_eq!(stale, 0, "a stale compare-and-set changes nothing");
        let value: i32 = counters::table
            .select(counters::value)
            .first(&mut conn)
            .unwrap();
        assert_eq!(value, 5);
    }
}
