//! The audit log end to end: every change of a resource recorded with the
//! token that made it, the action and the request; a tenant reads its own
//! (the admin's changes of it included), the admin everyone's; paged;
//! failed changes, reads and runs are not changes.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{ADMIN, Server, assert_problem, start};

/// Every entry the token sees with this query, oldest first, following
/// the cursors in pages of `limit`.
async fn log(s: &Server, token: &str, query: &str, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/audit?limit={limit}{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = s.call(Method::GET, &path, Some(token), None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {:?}", r.body);
        let items = r.body["items"].as_array().unwrap();
        assert!(items.len() <= limit as usize);
        out.extend(items.iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    out.reverse();
    out
}

fn actions(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_recorded_with_who_what_and_when() {
    let s = start().await;
    let before = jiff::Timestamp::now();
    let (acme, t, acme_token) = s.created_tenant("acme").await;
    let (beta, b, _) = s.created_tenant("beta").await;

    assert_eq!(
        s.push(&t, "echo", test_programs::ECHO).await.status,
        StatusCode::CREATED
    );
    let def = json!({"steps": [{"id": "a", "step": "echo"}]});
    assert_eq!(s.workflow(&t, "w", def).await.status, StatusCode::CREATED);
    // Refused changes, reads and runs are not recorded.
    let bad = json!({"steps": [{"id": "a", "step": "missing"}]});
    assert_eq!(
        s.workflow(&t, "bad", bad).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        s.call(Method::GET, "/v1/workflows/w", Some(&t), None)
            .await
            .status,
        StatusCode::OK
    );
    let run = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&t),
            Some(json!({"workflow_id": "w", "input_data": {}})),
        )
        .await;
    assert_eq!(run.status, StatusCode::OK, "{:?}", run.body);
    let put = |name: &'static str| {
        let (s, t) = (&s, &t);
        async move {
            s.call(
                Method::PUT,
                &format!("/v1/secrets/{name}"),
                Some(t),
                Some(json!({"value": "hunter2"})),
            )
            .await
        }
    };
    assert_eq!(put("key").await.status, StatusCode::CREATED);
    let r = s
        .call(Method::DELETE, "/v1/secrets/key", Some(&t), None)
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let r = s
        .call(
            Method::POST,
            "/v1/schedules",
            Some(&t),
            Some(json!({"workflow_id": "w", "cron": "0 3 * * *"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let schedule = r.body["schedule_id"].as_str().unwrap().to_owned();
    let r = s
        .call(
            Method::POST,
            &format!("/v1/schedules/{schedule}/pause"),
            Some(&t),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    // The admin changes acme: its quotas, a token, its state.
    let r = s
        .call(
            Method::PUT,
            "/v1/tenants/acme/quotas",
            Some(ADMIN),
            Some(json!({"max_steps": 5})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = s
        .call(
            Method::POST,
            &format!("/v1/tenants/{acme}/tokens"),
            Some(ADMIN),
            Some(json!({"name": "ci"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let ci = r.body["token_id"].as_str().unwrap().to_owned();
    // acme revokes it itself.
    let r = s
        .call(
            Method::DELETE,
            &format!("/v1/tenants/acme/tokens/{ci}"),
            Some(&t),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    for action in ["suspend", "unsuspend"] {
        let r = s
            .call(
                Method::POST,
                &format!("/v1/tenants/acme/{action}"),
                Some(ADMIN),
                None,
            )
            .await;
        assert!(r.status.is_success(), "{:?}", r.body);
    }
    // Another tenant's change.
    assert_eq!(
        s.push(&b, "echo", test_programs::ECHO).await.status,
        StatusCode::CREATED
    );

    let own = log(&s, &t, "", 3).await;
    assert_eq!(
        actions(&own),
        [
            "tenant.create",
            "step.put",
            "workflow.put",
            "secret.put",
            "secret.delete",
            "schedule.create",
            "schedule.pause",
            "quota.set",
            "token.create",
            "token.revoke",
            "tenant.suspend",
            "tenant.unsuspend",
        ]
    );
    let after = jiff::Timestamp::now();
    for e in &own {
        assert_eq!(e["tenant_id"], acme.as_str(), "{e}");
        let at: jiff::Timestamp = e["at"].as_str().unwrap().parse().unwrap();
        assert!(before <= at && at <= after, "{e}");
        let by_admin = matches!(
            e["action"].as_str().unwrap(),
            "tenant.create" | "quota.set" | "token.create" | "tenant.suspend" | "tenant.unsuspend"
        );
        let who = if by_admin {
            "admin"
        } else {
            acme_token.as_str()
        };
        assert_eq!(e["token_id"], who, "{e}");
    }
    assert_eq!(own[1]["request"], "PUT /v1/steps/echo");
    assert_eq!(own[7]["request"], "PUT /v1/tenants/acme/quotas");
    let ids: std::collections::HashSet<_> = own.iter().map(|e| e["audit_id"].clone()).collect();
    assert_eq!(ids.len(), own.len(), "ids are unique");

    // The admin sees everyone's, or one tenant's.
    let all = log(&s, ADMIN, "", 100).await;
    assert_eq!(all.len(), own.len() + 2);
    assert_eq!(actions(&all[1..2]), ["tenant.create"]);
    assert_eq!(all[1]["tenant_id"], beta.as_str());
    let betas = log(&s, ADMIN, "&tenant=beta", 100).await;
    assert_eq!(actions(&betas), ["tenant.create", "step.put"]);
    // A tenant reads no one else's.
    let r = s
        .call(Method::GET, "/v1/audit?tenant=beta", Some(&t), None)
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not found");
    let r = s
        .call(Method::GET, "/v1/audit?tenant=acme", Some(&t), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 12);
    let r = s
        .call(Method::GET, "/v1/audit?cursor=garbage", Some(&t), None)
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "cursor");

    // Deleting a tenant is recorded, and its log outlives it.
    let r = s
        .call(Method::DELETE, "/v1/tenants/beta", Some(ADMIN), None)
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let all = log(&s, ADMIN, "", 100).await;
    let last = all.last().unwrap();
    assert_eq!(last["action"], "tenant.delete");
    assert_eq!(last["tenant_id"], beta.as_str());
    assert_eq!(
        all.iter()
            .filter(|e| e["tenant_id"] == beta.as_str())
            .count(),
        3
    );
}
