//! The rules of schedules: ids unique per tenant, listing with filters and
//! cursors, the due scan, the compare-and-set write that stores a tick's
//! execution (at most one per tick), a finished execution making its
//! buffered schedule due, and deleted workflows keeping their versions.

use serde_json::json;

use super::work::lease;
use super::{Harness, execution, later, new_tenant, save};
use crate::model::{
    Overlap, Schedule, ScheduleId, ScheduleRun, ScheduleState, Status, TenantId, Timestamp,
};
use crate::store::{Error, ExecutionFilter, ScheduleFilter, ScheduleWrite, Start, Store};

pub(super) fn schedule(tenant: &TenantId, id: &str, workflow: &str, at: Timestamp) -> Schedule {
    Schedule {
        schedule_id: ScheduleId::new_unchecked(id),
        tenant_id: tenant.clone(),
        workflow_id: workflow.parse().unwrap(),
        workflow_version: None,
        cron: "* * * * *".into(),
        timezone: "UTC".into(),
        input_data: json!({"n": 12.50}),
        custom_data: None,
        callback: None,
        overlap: Overlap::Skip,
        catchup_window: Schedule::CATCHUP_WINDOW,
        start_at: None,
        end_at: None,
        description: Some("every minute".into()),
        state: ScheduleState::Active,
        invalid_reason: None,
        last_error: None,
        next_fire_at: Some(at),
        buffered_at: None,
        fired: 0,
        skipped: 0,
        missed: 0,
        last_executions: Vec::new(),
        created_at: at,
        updated_at: at,
        version: 1,
    }
}

async fn write(
    store: &dyn Store,
    s: &Schedule,
    version: u64,
    wake_at: Option<Timestamp>,
    start: Option<Start<'_>>,
) -> Option<u64> {
    store
        .write_schedule(ScheduleWrite {
            schedule: s,
            version,
            wake_at,
            start,
        })
        .await
        .unwrap()
}

/// Ids are unique per tenant; a schedule round-trips with its version;
/// lists filter by workflow and state and page newest first; deleting
/// removes it once.
pub(crate) async fn schedules_round_trip_and_list(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let other = new_tenant(&*store, "other").await;
    let t0 = Timestamp::now();
    let a = schedule(&acme, "a", "orders", t0);
    let mut b = schedule(&acme, "b", "reports", t0);
    b.state = ScheduleState::Paused;
    let c = schedule(&acme, "c", "orders", t0);
    for s in [&a, &b, &c] {
        store.create_schedule(s, s.next_fire_at).await.unwrap();
    }
    assert!(matches!(
        store.create_schedule(&a, None).await,
        Err(Error::AlreadyExists(_))
    ));
    // Another tenant may use the same id.
    store
        .create_schedule(&schedule(&other, "a", "orders", t0), None)
        .await
        .unwrap();
    let got = store
        .schedule(&acme, &a.schedule_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, a);
    assert_eq!(
        store
            .schedule(&acme, &ScheduleId::new_unchecked("nope"))
            .await
            .unwrap(),
        None
    );

    let list = |filter: ScheduleFilter, limit, cursor: Option<String>| {
        let store = store.clone();
        let acme = acme.clone();
        async move {
            store
                .schedules(&acme, &filter, limit, cursor.as_deref())
                .await
                .unwrap()
        }
    };
    let names = |items: &[Schedule]| -> Vec<String> {
        items.iter().map(|s| s.schedule_id.to_string()).collect()
    };
    let page = list(ScheduleFilter::default(), 2, None).await;
    assert_eq!(names(&page.items), ["c", "b"]);
    let rest = list(ScheduleFilter::default(), 2, page.next_cursor).await;
    assert_eq!(names(&rest.items), ["a"]);
    assert_eq!(rest.next_cursor, None);
    let orders = ScheduleFilter {
        workflow_id: Some("orders".parse().unwrap()),
        state: None,
    };
    assert_eq!(names(&list(orders, 10, None).await.items), ["c", "a"]);
    let paused = ScheduleFilter {
        workflow_id: None,
        state: Some(ScheduleState::Paused),
    };
    assert_eq!(names(&list(paused, 10, None).await.items), ["b"]);

    assert!(store.delete_schedule(&acme, &a.schedule_id).await.unwrap());
    assert!(!store.delete_schedule(&acme, &a.schedule_id).await.unwrap());
    assert!(
        store
            .schedule(&other, &a.schedule_id)
            .await
            .unwrap()
            .is_some()
    );
}

/// Due schedules come earliest `wake_at` first; a schedule without one is
/// never due; `next_schedule_at` is the earliest.
pub(crate) async fn due_schedules_by_wake_at(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let late = schedule(&acme, "late", "w", t0);
    let early = schedule(&acme, "early", "w", t0);
    let never = schedule(&acme, "never", "w", t0);
    store
        .create_schedule(&late, Some(later(t0, 20)))
        .await
        .unwrap();
    store
        .create_schedule(&early, Some(later(t0, 10)))
        .await
        .unwrap();
    store.create_schedule(&never, None).await.unwrap();
    assert_eq!(store.next_schedule_at().await.unwrap(), Some(later(t0, 10)));
    assert!(
        store
            .due_schedules(later(t0, 9), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = store.due_schedules(later(t0, 30), 10).await.unwrap();
    let names: Vec<&str> = due.iter().map(|s| s.schedule_id.as_str()).collect();
    assert_eq!(names, ["early", "late"]);
    assert_eq!(due[0].tenant_id, acme);
    assert_eq!(
        store.due_schedules(later(t0, 30), 1).await.unwrap().len(),
        1
    );
    // Written without a wake time, it leaves the queue.
    write(&*store, &due[0], due[0].version, None, None)
        .await
        .unwrap();
    let due = store.due_schedules(later(t0, 30), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(store.next_schedule_at().await.unwrap(), Some(later(t0, 20)));
}

/// The write of a tick stores the schedule and its execution together,
/// only at the version read, and a tick starts at most one execution even
/// when written again at the newer version; the execution is found by its
/// schedule.
pub(crate) async fn a_tick_starts_at_most_one_execution(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let mut s = schedule(&acme, "nightly", "orders", t0);
    store.create_schedule(&s, Some(t0)).await.unwrap();
    let tick = t0;
    let fire = |s: &Schedule| {
        let mut e = execution(&acme, "orders", t0);
        e.schedule_id = Some(s.schedule_id.clone());
        e.scheduled_at = Some(tick);
        e
    };
    let first = fire(&s);
    s.started(ScheduleRun {
        execution_id: first.execution_id.clone(),
        scheduled_at: tick,
        triggered: false,
    });
    s.next_fire_at = Some(later(t0, 60));
    let start = Start {
        execution: &first,
        lease: None,
        tick: Some(tick),
    };
    let v2 = write(&*store, &s, 1, s.next_fire_at, Some(start)).await;
    assert_eq!(v2, Some(2));
    // A second writer that read version 1 loses, and stores nothing.
    let twin = fire(&s);
    let start = Start {
        execution: &twin,
        lease: None,
        tick: Some(tick),
    };
    assert_eq!(write(&*store, &s, 1, None, Some(start)).await, None);
    // So does one at the current version for the same tick.
    assert_eq!(write(&*store, &s, 2, None, Some(start)).await, None);
    let stored = store
        .schedule(&acme, &s.schedule_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.fired, 1);
    assert_eq!(stored.next_fire_at, Some(later(t0, 60)));
    assert_eq!(
        store.execution(&acme, &twin.execution_id).await.unwrap(),
        None
    );
    let got = store
        .execution(&acme, &first.execution_id)
        .await
        .unwrap()
        .expect("the tick's execution is stored");
    assert_eq!(got.schedule_id, Some(s.schedule_id.clone()));
    assert_eq!(got.scheduled_at, Some(tick));
    // Triggers carry no tick: two at the same instant both start.
    for _ in 0..2 {
        let current = store
            .schedule(&acme, &s.schedule_id)
            .await
            .unwrap()
            .unwrap();
        let extra = fire(&current);
        let start = Start {
            execution: &extra,
            lease: Some(&lease("node", later(t0, 60))),
            tick: None,
        };
        assert!(
            write(&*store, &current, current.version, None, Some(start))
                .await
                .is_some()
        );
    }
    let by_schedule = ExecutionFilter {
        schedule_id: Some(s.schedule_id.clone()),
        ..ExecutionFilter::default()
    };
    let page = store
        .executions(&acme, &by_schedule, 10, None)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    let none = ExecutionFilter {
        schedule_id: Some(ScheduleId::new_unchecked("other")),
        ..ExecutionFilter::default()
    };
    assert!(
        store
            .executions(&acme, &none, 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// The end of an execution of a schedule with a buffered tick makes the
/// schedule due at the execution's finish; without a buffered tick it
/// changes nothing.
pub(crate) async fn a_finished_execution_makes_its_buffered_schedule_due(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    for (id, buffered) in [("buffered", true), ("plain", false)] {
        let mut s = schedule(&acme, id, "orders", t0);
        s.overlap = Overlap::BufferOne;
        if buffered {
            s.buffered_at = Some(t0);
        }
        store
            .create_schedule(&s, Some(later(t0, 3600)))
            .await
            .unwrap();
        let mut e = execution(&acme, "orders", t0);
        e.schedule_id = Some(s.schedule_id.clone());
        store.create_execution(&e, None, None).await.unwrap();
        e.enter(Status::Succeeded, later(t0, 5));
        save(&*store, &mut e).await;
    }
    let due = store.due_schedules(later(t0, 5), 10).await.unwrap();
    let names: Vec<&str> = due.iter().map(|s| s.schedule_id.as_str()).collect();
    assert_eq!(names, ["buffered"]);
    assert!(
        store
            .due_schedules(later(t0, 4), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A deleted workflow keeps its versions, marked deleted, for the
/// executions that run them; deleting twice reports nothing to delete; the
/// next put stores a new version even of the same definition.
pub(crate) async fn deleted_workflows_keep_their_versions(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let id = "orders".parse().unwrap();
    let def = json!({"steps": [{"id": "a", "step": "echo"}]});
    store.put_workflow(&acme, &id, &def).await.unwrap();
    let t0 = Timestamp::now();
    assert!(store.delete_workflow(&acme, &id, t0).await.unwrap());
    assert!(!store.delete_workflow(&acme, &id, t0).await.unwrap());
    let v1 = store.workflow(&acme, &id, Some(1)).await.unwrap().unwrap();
    assert_eq!(v1.deleted_at, Some(t0));
    assert_eq!(v1.definition, def);
    let latest = store.workflows(&acme).await.unwrap();
    assert_eq!(latest[0].deleted_at, Some(t0));
    let again = store.put_workflow(&acme, &id, &def).await.unwrap();
    assert_eq!(again.version, 2);
    assert_eq!(again.deleted_at, None);
    let latest = store.workflow(&acme, &id, None).await.unwrap().unwrap();
    assert_eq!((latest.version, latest.deleted_at), (2, None));
    assert!(
        !store
            .delete_workflow(&TenantId::generate(), &id, t0)
            .await
            .unwrap()
    );
}
