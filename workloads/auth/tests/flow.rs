//! The auth service against real Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tributary_auth::{Auth, AuthConfig};
use tributary_core::config::Env;
use tributary_tests::{Stack, unique_name};

const SECRET: &str = "test-secret-test-secret-test-secret!";

struct Server {
    base: String,
    http: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(extra: &[(&str, &str)]) -> Server {
    let stack = Stack::require();
    let mut vars: Vec<(&str, &str)> = vec![
        ("AUTH_HOST", "127.0.0.1"),
        ("POSTGRES_DSN", stack.postgres_dsn.as_str()),
        ("JWT_SECRET", SECRET),
    ];
    vars.extend_from_slice(extra);
    let vars: std::collections::HashMap<String, String> = vars
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut config = AuthConfig::from_env(&Env::new(&vars)).unwrap();
    config.listen.set_port(0);
    let auth = Auth::bind(&config).await.unwrap();
    let base = format!("http://{}", auth.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(auth.serve(stop.clone()));
    Server {
        base,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        stop,
    }
}

impl Server {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A new user, logged in: (email, token).
    async fn user(&self) -> (String, String) {
        let email = format!("{}@example.test", unique_name("user"));
        let (s, _) = self
            .call(
                "POST",
                "/api/signup",
                None,
                Some(json!({"email": email, "password": "s3cret-pass"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, body) = self
            .call(
                "POST",
                "/api/login",
                None,
                Some(json!({"email": email, "password": "s3cret-pass"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        (email, body["token"].as_str().unwrap().to_owned())
    }

    async fn project(&self, token: &str) -> i64 {
        let (s, body) = self
            .call(
                "POST",
                "/api/projects",
                Some(token),
                Some(json!({"name": "Shop"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        body["id"].as_i64().unwrap()
    }

    async fn validate(&self, key: &str, scope: &str) -> Value {
        let (s, body) = self
            .call(
                "POST",
                "/api/keys/validate",
                None,
                Some(json!({"api_key": key, "scope": scope})),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        body
    }
}

#[tokio::test]
async fn signup_login_project_key_validate_revoke() {
    let srv = start(&[]).await;
    let (email, token) = srv.user().await;

    let (s, me) = srv.call("GET", "/api/me", Some(&token), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["email"], email);

    let project = srv.project(&token).await;
    let (s, key) = srv
        .call(
            "POST",
            &format!("/api/projects/{project}/api-keys"),
            Some(&token),
            Some(json!({"name": "web", "scope": "capture"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{key}");
    let secret = key["api_key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("trb_"));
    assert_eq!(key["scope"], "capture");

    let v = srv.validate(&secret, "capture").await;
    assert_eq!(
        v,
        json!({"valid": true, "project_id": project, "scope": "capture"})
    );
    // A capture key cannot query.
    assert_eq!(
        srv.validate(&secret, "query").await,
        json!({"valid": false})
    );
    assert_eq!(
        srv.validate("trb_made_up", "capture").await,
        json!({"valid": false})
    );

    // Listed without the secret, with last_used_at set.
    let (s, list) = srv
        .call(
            "GET",
            &format!("/api/projects/{project}/api-keys"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let listed = &list["api_keys"][0];
    assert!(listed.get("api_key").is_none(), "{listed}");
    assert!(!list.to_string().contains(&secret[4..]));
    assert!(listed["last_used_at"].is_string(), "{listed}");

    // The table holds no plaintext key.
    let stack = Stack::require();
    let pool = sqlx::PgPool::connect(&stack.postgres_dsn).await.unwrap();
    let dump: Vec<String> =
        sqlx::query_scalar("SELECT row_to_json(k)::text FROM api_keys k WHERE project_id = $1")
            .bind(project)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(dump.len(), 1);
    assert!(
        !dump[0].contains(&secret[4..]),
        "plaintext key stored: {}",
        dump[0]
    );

    let key_id = key["id"].as_i64().unwrap();
    let (s, _) = srv
        .call(
            "DELETE",
            &format!("/api/projects/{project}/api-keys/{key_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        srv.validate(&secret, "capture").await,
        json!({"valid": false})
    );
}

#[tokio::test]
async fn bad_input_and_failed_logins() {
    let srv = start(&[("AUTH_LOGIN_MAX_FAILURES", "3")]).await;
    let (email, _) = srv.user().await;

    let (s, body) = srv
        .call(
            "POST",
            "/api/signup",
            None,
            Some(json!({"email": email, "password": "another-pass"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let (s, body) = srv
        .call(
            "POST",
            "/api/signup",
            None,
            Some(json!({"email": "x@y.test"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("password"),
        "{body}"
    );
    let (s, body) = srv
        .call(
            "POST",
            "/api/signup",
            None,
            Some(json!({"email": "nope", "password": "long-enough"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("email"),
        "{body}"
    );

    // Same answer for an unknown user and a wrong password.
    let (s1, unknown) = srv
        .call(
            "POST",
            "/api/login",
            None,
            Some(json!({"email": "ghost@example.test", "password": "whatever1"})),
        )
        .await;
    let (s2, wrong) = srv
        .call(
            "POST",
            "/api/login",
            None,
            Some(json!({"email": email, "password": "wrong-pass"})),
        )
        .await;
    assert_eq!(
        (s1, s2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(unknown, wrong);

    // Third failure for this account, then it is refused for a while, even
    // with the right password.
    srv.call(
        "POST",
        "/api/login",
        None,
        Some(json!({"email": email, "password": "wrong-again"})),
    )
    .await;
    srv.call(
        "POST",
        "/api/login",
        None,
        Some(json!({"email": email, "password": "wrong-thrice"})),
    )
    .await;
    let (s, body) = srv
        .call(
            "POST",
            "/api/login",
            None,
            Some(json!({"email": email, "password": "s3cret-pass"})),
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
}

#[tokio::test]
async fn tokens_and_projects_of_others_are_refused() {
    let srv = start(&[]).await;
    let (_, alice) = srv.user().await;
    let (_, bob) = srv.user().await;
    let project = srv.project(&alice).await;
    let (_, key) = srv
        .call(
            "POST",
            &format!("/api/projects/{project}/api-keys"),
            Some(&alice),
            Some(json!({"name": "k", "scope": "query"})),
        )
        .await;
    let key_id = key["id"].as_i64().unwrap();

    for (method, path, body) in [
        ("GET", format!("/api/projects/{project}/api-keys"), None),
        (
            "POST",
            format!("/api/projects/{project}/api-keys"),
            Some(json!({"name": "x", "scope": "capture"})),
        ),
        (
            "DELETE",
            format!("/api/projects/{project}/api-keys/{key_id}"),
            None,
        ),
    ] {
        let (s, _) = srv.call(method, &path, Some(&bob), body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path} as another user");
    }
    let (_, list) = srv.call("GET", "/api/projects", Some(&bob), None).await;
    assert_eq!(list["projects"], json!([]));

    // Tampered, expired and missing tokens.
    let mut tampered = alice.clone();
    tampered.pop();
    tampered.push(if alice.ends_with('A') { 'B' } else { 'A' });
    let expired = tributary_auth::secrets::issue_token(
        SECRET,
        1,
        "a@b.test",
        chrono::Utc::now().timestamp() - 7200,
        60,
    )
    .unwrap();
    let other_secret = tributary_auth::secrets::issue_token(
        "not-the-server-secret-not-the-server",
        1,
        "a@b.test",
        chrono::Utc::now().timestamp(),
        600,
    )
    .unwrap();
    for token in [
        tampered.as_str(),
        expired.as_str(),
        other_secret.as_str(),
        "garbage",
    ] {
        let (s, _) = srv.call("GET", "/api/me", Some(token), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{token}");
    }
    let (s, _) = srv.call("GET", "/api/me", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let (_, metrics) = (
        StatusCode::OK,
        srv.http
            .get(format!("{}/metrics", srv.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(
        metrics.contains("auth_requests_total{route=\"/api/me\",status=\"401\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("auth_request_duration_seconds"),
        "{metrics}"
    );
}

/// A login with a forged `X-Forwarded-For` in front of what the ingress
/// appended (`real`, the client it saw).
async fn login_through_ingress(srv: &Server, forged: &str, real: &str, email: &str) -> StatusCode {
    srv.http
        .post(format!("{}/api/login", srv.base))
        .header("x-forwarded-for", format!("{forged}, {real}"))
        .json(&json!({"email": email, "password": "wrong-password"}))
        .send()
        .await
        .unwrap()
        .status()
}

/// Behind one ingress (`AUTH_TRUSTED_PROXY_HOPS=1`), a client rotating the
/// `X-Forwarded-For` entries it writes itself still meets the limit on its
/// address, which is the one the ingress appended: after the limit's
/// failures over different accounts, its next attempt is refused. Another
/// client (another address the ingress saw) is not. Before, the leftmost,
/// forged entry was taken and rotating it never hit the limit.
#[tokio::test]
async fn a_client_behind_the_ingress_cannot_rotate_its_way_past_the_address_limit() {
    let srv = start(&[
        ("AUTH_TRUSTED_PROXY_HOPS", "1"),
        ("AUTH_LOGIN_MAX_FAILURES", "3"),
    ])
    .await;
    for i in 0..3 {
        let email = format!("{}@example.test", unique_name("target"));
        let status =
            login_through_ingress(&srv, &format!("10.9.9.{i}"), "198.51.100.7", &email).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let email = format!("{}@example.test", unique_name("target"));
    assert_eq!(
        login_through_ingress(&srv, "10.9.9.200", "198.51.100.7", &email).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the address the ingress saw is limited, whatever was forged in front"
    );
    assert_eq!(
        login_through_ingress(&srv, "10.9.9.200", "198.51.100.8", &email).await,
        StatusCode::UNAUTHORIZED,
        "another client of the same ingress is not"
    );
}

/// POSTs `body` to `path` as the client `address` behind one ingress.
async fn post_from(srv: &Server, address: &str, path: &str, body: Value) -> reqwest::Response {
    srv.http
        .post(format!("{}{path}", srv.base))
        .header("x-forwarded-for", address)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn assert_limited(r: reqwest::Response, setting: &str) {
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains(setting),
        "{body}"
    );
}

/// Signups, logins and key validations are limited per client address
/// (a token bucket): past the burst an address gets 429 with
/// `Retry-After`, and another address goes on. Before, nothing limited
/// signups or validations, and logins only by failures.
#[tokio::test]
async fn an_address_past_its_rate_is_told_when_to_retry_and_others_go_on() {
    let srv = start(&[
        ("AUTH_TRUSTED_PROXY_HOPS", "1"),
        ("AUTH_RATE_LIMIT_PER_ADDRESS", "0.1"),
        ("AUTH_RATE_LIMIT_PER_ADDRESS_BURST", "2"),
        ("AUTH_VALIDATE_RATE_LIMIT_PER_ADDRESS", "0.1"),
        ("AUTH_VALIDATE_RATE_LIMIT_PER_ADDRESS_BURST", "3"),
    ])
    .await;
    let email = format!("{}@example.test", unique_name("limited"));
    let credentials = json!({"email": email, "password": "s3cret-pass"});
    let signup = post_from(&srv, "198.51.100.20", "/api/signup", credentials.clone()).await;
    assert_eq!(signup.status(), StatusCode::CREATED);
    let login = post_from(&srv, "198.51.100.20", "/api/login", credentials.clone()).await;
    assert_eq!(login.status(), StatusCode::OK);
    // Signups and logins share the address's bucket.
    let again = post_from(&srv, "198.51.100.20", "/api/login", credentials.clone()).await;
    assert_limited(again, "AUTH_RATE_LIMIT_PER_ADDRESS").await;
    let other = post_from(&srv, "198.51.100.21", "/api/login", credentials).await;
    assert_eq!(other.status(), StatusCode::OK, "another address");

    let check = json!({"api_key": "trb_made_up", "scope": "capture"});
    for i in 0..3 {
        let r = post_from(&srv, "198.51.100.20", "/api/keys/validate", check.clone()).await;
        assert_eq!(r.status(), StatusCode::OK, "validation {i}");
    }
    let r = post_from(&srv, "198.51.100.20", "/api/keys/validate", check.clone()).await;
    assert_limited(r, "AUTH_VALIDATE_RATE_LIMIT_PER_ADDRESS").await;
    let r = post_from(&srv, "198.51.100.21", "/api/keys/validate", check).await;
    assert_eq!(r.status(), StatusCode::OK, "another address");
}

/// The default settings limit a script, not a person: 20 logins from one
/// address pass at once (even bad ones, which cost no hashing), and a burst
/// past 25 meets the limit, before its body is even read.
#[tokio::test]
async fn by_default_a_burst_of_logins_from_one_address_meets_the_limit() {
    let srv = start(&[]).await;
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let r = srv
            .http
            .post(format!("{}/api/login", srv.base))
            .body("not json")
            .send()
            .await
            .unwrap();
        statuses.push(r.status());
    }
    assert!(
        statuses[..20].iter().all(|s| *s == StatusCode::BAD_REQUEST),
        "{statuses:?}"
    );
    assert!(
        statuses[25..].contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

/// A key's validation is a read: `last_used_at` is written at most once a
/// minute per key, so a flood of validations (of one valid key, or of
/// unknown ones, which match no row) costs Postgres no write per request.
/// Before, every validation was an UPDATE of the key's row. The row's
/// `xmin` changes with every write of it; this cannot show writes that
/// touch no row (an UPDATE matching nothing writes no tuple either).
#[tokio::test]
async fn validating_a_key_writes_its_row_at_most_once_a_minute() {
    let srv = start(&[]).await;
    let (_, token) = srv.user().await;
    let project = srv.project(&token).await;
    let (s, key) = srv
        .call(
            "POST",
            &format!("/api/projects/{project}/api-keys"),
            Some(&token),
            Some(json!({"name": "web", "scope": "capture"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{key}");
    let secret = key["api_key"].as_str().unwrap();
    let id = key["id"].as_i64().unwrap();
    let pool = sqlx::PgPool::connect(&Stack::require().postgres_dsn)
        .await
        .unwrap();
    let version = || {
        sqlx::query_scalar::<_, String>("SELECT xmin::text FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
    };
    let created = version().await.unwrap();
    assert_eq!(srv.validate(secret, "capture").await["valid"], true);
    let first_use = version().await.unwrap();
    assert_ne!(first_use, created, "the first use is recorded");
    for _ in 0..20 {
        assert_eq!(srv.validate(secret, "capture").await["valid"], true);
    }
    assert_eq!(
        version().await.unwrap(),
        first_use,
        "no write per validation"
    );
}

/// Postgres refuses NUL in text. A name or email holding one is the
/// client's mistake (400), not a database outage (503): schemathesis found
/// the 503.
#[tokio::test]
async fn control_characters_in_names_and_emails_are_bad_requests() {
    let srv = start(&[]).await;
    let (_, token) = srv.user().await;
    let (s, body) = srv
        .call(
            "POST",
            "/api/projects",
            Some(&token),
            Some(json!({"name": "shop\u{0}"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("control"));
    let project = srv.project(&token).await;
    let (s, body) = srv
        .call(
            "POST",
            &format!("/api/projects/{project}/api-keys"),
            Some(&token),
            Some(json!({"name": "k\u{0}", "scope": "capture"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    for path in ["/api/signup", "/api/login"] {
        let (s, body) = srv
            .call(
                "POST",
                path,
                None,
                Some(json!({"email": "a\u{0}@example.test", "password": "s3cret-pass"})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {body}");
    }
}

/// A `dashboards` key validates for `query` too (it reads answers as well as
/// saving insights); a `query` key does not validate for `dashboards`, and a
/// `dashboards` key cannot capture.
#[tokio::test]
async fn dashboards_keys_also_query_and_query_keys_do_not_write() {
    let srv = start(&[]).await;
    let (_, token) = srv.user().await;
    let project = srv.project(&token).await;
    let mut keys = std::collections::HashMap::new();
    for scope in ["query", "dashboards"] {
        let (s, key) = srv
            .call(
                "POST",
                &format!("/api/projects/{project}/api-keys"),
                Some(&token),
                Some(json!({"name": scope, "scope": scope})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{key}");
        assert_eq!(key["scope"], scope);
        keys.insert(scope, key["api_key"].as_str().unwrap().to_owned());
    }
    let yes = |scope: &str| json!({"valid": true, "project_id": project, "scope": scope});
    let no = json!({"valid": false});
    assert_eq!(
        srv.validate(&keys["dashboards"], "query").await,
        yes("query")
    );
    assert_eq!(
        srv.validate(&keys["dashboards"], "dashboards").await,
        yes("dashboards")
    );
    assert_eq!(srv.validate(&keys["dashboards"], "capture").await, no);
    assert_eq!(srv.validate(&keys["query"], "query").await, yes("query"));
    assert_eq!(srv.validate(&keys["query"], "dashboards").await, no);
    let (s, body) = srv
        .call(
            "POST",
            &format!("/api/projects/{project}/api-keys"),
            Some(&token),
            Some(json!({"name": "x", "scope": "admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.to_string().contains("dashboards"), "{body}");
}
