//! Writes through the repositories' `Database`: on SQLite they all run on
//! one writer connection, kept behind the write lock; a write that fails
//! badly must not leave that connection (or, on PostgreSQL, a pooled one)
//! inside an open transaction, where every later write would vanish.

use diesel::prelude::*;
use passkey_auth::repositories::{EventRecord, EventRepository, RepoError};
use passkey_auth::schema::auth_events;

use crate::helpers::*;

on_both_backends!(
    a_write_that_panics_in_its_transaction_leaves_later_writes_committed,
    writes_from_many_tasks_are_all_committed,
);

/// An event of this test only (`kind` is unique per call of the test).
fn event(kind: &str, detail: String) -> EventRecord {
    EventRecord {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: None,
        kind: kind.to_owned(),
        outcome: "success".into(),
        client_ip: "127.0.0.1".into(),
        user_agent: None,
        detail: Some(detail),
        created_at: chrono::Utc::now().naive_utc(),
    }
}

/// The details of `kind`'s events, read on a connection of its own.
fn stored_details(app: &TestApp, kind: &str) -> Vec<String> {
    let mut details: Vec<String> = auth_events::table
        .filter(auth_events::kind.eq(kind))
        .select(auth_events::detail.assume_not_null())
        .load(&mut app.db())
        .unwrap();
    details.sort();
    details
}

fn unique_kind() -> String {
    format!(
        "write-test-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

async fn a_write_that_panics_in_its_transaction_leaves_later_writes_committed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let db = app.database(3).await;
    let kind = unique_kind();
    let first = event(&kind, "before".into());
    EventRepository::new(db.clone())
        .insert(first)
        .await
        .unwrap();

    // A bug in a write: it panics inside its transaction, after an insert.
    let doomed = event(&kind, "panicked".into());
    let outcome = db
        .write(move |conn| {
            let _ = conn.transaction::<(), diesel::result::Error, _>(|conn| {
                diesel::insert_into(auth_events::table)
                    .values(&doomed)
                    .execute(conn)?;
                panic!("a bug in a write");
            });
            Ok(())
        })
        .await;
    assert!(
        matches!(outcome, Err(RepoError::Blocking(_))),
        "{outcome:?}"
    );

    // Later writes commit: a connection of their own sees them, and the
    // panicked transaction's insert was rolled back.
    let events = EventRepository::new(db);
    for i in 0..3 {
        events
            .insert(event(&kind, format!("after {i}")))
            .await
            .unwrap();
    }
    assert_eq!(
        stored_details(&app, &kind),
        ["after 0", "after 1", "after 2", "before"]
    );
}

async fn writes_from_many_tasks_are_all_committed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let events = EventRepository::new(app.database(4).await);
    let kind = unique_kind();
    let writes = (0..40).map(|i| {
        let (events, record) = (events.clone(), event(&kind, format!("{i:02}")));
        actix_web::rt::spawn(async move { events.insert(record).await })
    });
    for write in futures_util::future::join_all(writes).await {
        write.unwrap().unwrap();
    }
    let expected: Vec<String> = (0..40).map(|i| format!("{i:02}")).collect();
    assert_eq!(stored_details(&app, &kind), expected);
}
