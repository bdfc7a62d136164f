//! The `auth_events` table (the audit trail).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Database, RepoError};
use crate::schema::auth_events;

/// An audit event. Its `None`s are stored as `NULL` (no column of the
/// schema has a default), which keeps the insert one statement Diesel can
/// prepare once and reuse: rendered with `DEFAULT`, as by default, it would
/// be prepared again on every insert. The other records do the same.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = auth_events, treat_none_as_default_value = false)]
pub struct EventRecord {
    pub id: String,
    pub user_id: Option<String>,
    pub kind: String,
    pub outcome: String,
    pub client_ip: String,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
    pub created_at: NaiveDateTime,
}

/// Inserts `event` on `conn`, inside whatever transaction the caller holds:
/// an [`AnyConnection`](crate::db::AnyConnection), or a backend's own
/// connection (a hot write, see [`crate::db::each_backend`]).
pub(super) fn insert_on<'e, C>(conn: &mut C, event: &'e EventRecord) -> QueryResult<()>
where
    C: diesel::Connection,
    diesel::dsl::Values<diesel::dsl::insert_into<auth_events::table>, &'e EventRecord>:
        diesel::query_dsl::methods::ExecuteDsl<C>,
{
    diesel::insert_into(auth_events::table)
        .values(event)
        .execute(conn)
        .map(|_| ())
}

#[derive(Clone)]
pub struct EventRepository {
    db: Database,
}

impl EventRepository {
    pub fn new(db: Database) -> Self {
        EventRepository { db }
    }

    /// Records an event that goes with no other change.
    pub async fn insert(&self, event: EventRecord) -> Result<(), RepoError> {
        self.db
            .write(move |conn| Ok(insert_on(conn, &event)?))
            .await
    }

    /// The user's events, newest first, older than `before` (an event id) if given.
    pub async fn list_for_user(
        &self,
        user_id: String,
        before: Option<String>,
        limit: i64,
    ) -> Result<Vec<EventRecord>, RepoError> {
        self.db
            .run(move |conn| {
                let mut query = auth_events::table
                    .filter(auth_events::user_id.eq(user_id))
                    .order(auth_events::id.desc())
                    .limit(limit)
                    .select(EventRecord::as_select())
                    .into_boxed();
                if let Some(before) = before {
                    query = query.filter(auth_events::id.lt(before));
                }
                Ok(query.load(conn)?)
            })
            .await
    }
}
