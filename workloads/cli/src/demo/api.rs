//! The demo's HTTP calls, as a team would make them: auth for a user, a
//! project and its keys, capture for the events, query for the answers.

use std::time::Duration;

use serde_json::{Value, json};

/// A call that failed, naming it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{call}: {message}")]
    Failed { call: String, message: String },
    #[error("{call}: answered {status}: {body}")]
    Status {
        call: String,
        status: u16,
        body: String,
    },
}

/// Where the workloads listen.
#[derive(Debug, Clone)]
pub struct Urls {
    pub auth: String,
    pub capture: String,
    pub query: String,
}

/// A project and its keys.
#[derive(Debug, Clone)]
pub struct Project {
    pub id: u64,
    pub capture_key: String,
    pub query_key: String,
}

pub struct Api {
    http: reqwest::Client,
    urls: Urls,
}

impl Api {
    pub fn new(urls: Urls) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ApiError::Failed {
                call: "HTTP client".into(),
                message: e.to_string(),
            })?;
        Ok(Self { http, urls })
    }

    /// POSTs `body` to `url` and returns the JSON answer of a 2xx.
    async fn post(&self, url: String, auth: Auth<'_>, body: &Value) -> Result<Value, ApiError> {
        let call = format!("POST {url}");
        let failed = |e: reqwest::Error| ApiError::Failed {
            call: call.clone(),
            message: e.to_string(),
        };
        let mut request = self.http.post(&url).json(body);
        request = match auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Key(key) => request.header("X-API-Key", key),
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(failed)?;
        if !(200..300).contains(&status) {
            return Err(ApiError::Status {
                call,
                status,
                body: text,
            });
        }
        serde_json::from_str(&text).map_err(|e| ApiError::Failed {
            call,
            message: format!("not JSON ({e}): {text}"),
        })
    }

    /// Signs a new user up and makes a project with a capture key and a key
    /// that queries and saves dashboards.
    pub async fn project(
        &self,
        email: &str,
        password: &str,
        name: &str,
    ) -> Result<Project, ApiError> {
        let auth = &self.urls.auth;
        let user = json!({"email": email, "password": password});
        self.post(format!("{auth}/api/signup"), Auth::None, &user)
            .await?;
        let login = self
            .post(format!("{auth}/api/login"), Auth::None, &user)
            .await?;
        let token = field(&login, "token", "login")?;
        let token = Auth::Bearer(&token);
        let project = self
            .post(
                format!("{auth}/api/projects"),
                token,
                &json!({"name": name}),
            )
            .await?;
        let id = project["id"].as_u64().ok_or_else(|| ApiError::Failed {
            call: "create project".into(),
            message: format!("no numeric id in {project}"),
        })?;
        let keys = format!("{auth}/api/projects/{id}/api-keys");
        let capture = self
            .post(
                keys.clone(),
                token,
                &json!({"name": "web", "scope": "capture"}),
            )
            .await?;
        let query = self
            .post(
                keys,
                token,
                // Reads answers, and saves the demo's dashboard.
                &json!({"name": "dashboards", "scope": "dashboards"}),
            )
            .await?;
        Ok(Project {
            id,
            capture_key: field(&capture, "api_key", "capture key")?,
            query_key: field(&query, "api_key", "query key")?,
        })
    }

    /// Sends `events` (PostHog batch format) through capture's `/batch`.
    pub async fn capture(&self, key: &str, events: Vec<Value>) -> Result<(), ApiError> {
        let body = json!({"api_key": key, "batch": events});
        self.post(format!("{}/batch", self.urls.capture), Auth::None, &body)
            .await
            .map(|_| ())
    }

    /// Saves an insight (`kind`: `trend`, `funnel`, `retention`) and
    /// answers its id.
    pub async fn save_insight(
        &self,
        key: &str,
        name: &str,
        kind: &str,
        query: &Value,
    ) -> Result<u64, ApiError> {
        let url = format!("{}/api/insights", self.urls.query);
        let body = json!({"name": name, "kind": kind, "query": query});
        id(
            &self.post(url, Auth::Key(key), &body).await?,
            "save insight",
        )
    }

    /// Saves a dashboard of `insights`, each `(id, width in columns of
    /// 12)`, and answers its id.
    pub async fn save_dashboard(
        &self,
        key: &str,
        name: &str,
        insights: &[(u64, u8)],
    ) -> Result<u64, ApiError> {
        let url = format!("{}/api/dashboards", self.urls.query);
        let tiles: Vec<Value> = insights
            .iter()
            .map(|(i, width)| json!({"insight_id": i, "width": width}))
            .collect();
        let body = json!({"name": name, "tiles": tiles});
        id(
            &self.post(url, Auth::Key(key), &body).await?,
            "save dashboard",
        )
    }

    /// A query (`trend`, `funnel`, `retention`) of the key's project,
    /// computed fresh.
    pub async fn query(&self, key: &str, kind: &str, body: &Value) -> Result<Value, ApiError> {
        let url = format!("{}/api/query/{kind}?refresh=true", self.urls.query);
        self.post(url, Auth::Key(key), body).await
    }
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Key(&'a str),
}

fn id(answer: &Value, call: &str) -> Result<u64, ApiError> {
    answer["id"].as_u64().ok_or_else(|| ApiError::Failed {
        call: call.to_owned(),
        message: format!("no numeric id in {answer}"),
    })
}

fn field(answer: &Value, name: &str, call: &str) -> Result<String, ApiError> {
    answer[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::Failed {
            call: call.to_owned(),
            message: format!("no {name} in {answer}"),
        })
}
