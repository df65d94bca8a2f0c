//! A typed client of the HTTP API: what a host, an expert or a patient's page sends, read back
//! into the server's own response types.

use anyhow::{Context, bail};
use oncolive_server::api_types::{
    Created, JoinRequest, Joined, Me, Refreshed, SessionInfo, SessionList, SessionReply,
    StateRequest,
};
use oncolive_server::error::ErrorBody;
use oncolive_server::model::{Moderation, NewSession, Session, SessionId, SessionState};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use crate::hub::HubClient;
use oncolive_server::protocol::Snapshot;

/// One server (or node) as a client sees it: its base URL and an admin token.
#[derive(Clone)]
pub struct ApiClient {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    pub admin: String,
    pub http: reqwest::Client,
}

/// A session made for a test: its id and the staff tokens.
#[derive(Debug, Clone)]
pub struct TestSession {
    pub id: SessionId,
    pub expert: String,
    pub moderator: String,
    pub created: Created,
}

impl ApiClient {
    pub fn new(url: impl Into<String>, admin: impl Into<String>) -> ApiClient {
        ApiClient {
            url: url.into().trim_end_matches('/').to_owned(),
            admin: admin.into(),
            http: reqwest::Client::new(),
        }
    }

    /// Creates a session the way the host page does.
    pub async fn create(&self, new: &NewSession) -> anyhow::Result<Created> {
        let res = self.post("/api/sessions", Some(&self.admin), new).await?;
        read(res, StatusCode::CREATED).await
    }

    /// A session on colorectal screening with the given moderation.
    pub async fn create_session(&self, moderation: Moderation) -> anyhow::Result<TestSession> {
        let created = self
            .create(&NewSession {
                expert_profile: None,
                record: None,
                videos: Vec::new(),
                title: "Screening for colorectal cancer".into(),
                topic: "FIT tests and colonoscopy".into(),
                expert_name: "Dr. Chen".into(),
                scheduled_start: OffsetDateTime::now_utc(),
                moderation,
            })
            .await?;
        Ok(TestSession {
            id: created.session.id,
            expert: created.tokens.expert.clone(),
            moderator: created.tokens.moderator.clone(),
            created,
        })
    }

    /// A session made by [`ApiClient::create_session`] that its expert has taken live.
    pub async fn live_session(&self, moderation: Moderation) -> anyhow::Result<TestSession> {
        let session = self.create_session(moderation).await?;
        self.set_state(session.id, &session.expert, SessionState::Live)
            .await?;
        Ok(session)
    }

    /// Joins as a patient, as the patient page does.
    pub async fn join(&self, session: SessionId, name: Option<&str>) -> anyhow::Result<Joined> {
        let body = JoinRequest {
            name: name.map(str::to_owned),
        };
        let res = self
            .post(&format!("/api/sessions/{session}/join"), None, &body)
            .await?;
        read(res, StatusCode::CREATED).await
    }

    /// A fresh patient token.
    pub async fn patient(&self, session: SessionId) -> anyhow::Result<String> {
        Ok(self.join(session, None).await?.token)
    }

    pub async fn session(&self, id: SessionId) -> anyhow::Result<SessionInfo> {
        let res = self.get(&format!("/api/sessions/{id}"), None).await?;
        read(res, StatusCode::OK).await
    }

    /// `GET /api/sessions`.
    pub async fn sessions(&self) -> anyhow::Result<Vec<Session>> {
        let res = self.get("/api/sessions", None).await?;
        Ok(read::<SessionList>(res, StatusCode::OK).await?.sessions)
    }

    /// `GET /api/me`: who `token` belongs to.
    pub async fn me(&self, token: &str) -> anyhow::Result<Me> {
        read(self.get("/api/me", Some(token)).await?, StatusCode::OK).await
    }

    /// `POST /api/token/refresh`: a fresh token for whoever `token` belongs to.
    pub async fn refresh(&self, token: &str) -> anyhow::Result<Refreshed> {
        let path = "/api/token/refresh";
        let res = self
            .request(Method::POST, path, Some(token))
            .send()
            .await
            .context(path)?;
        read(res, StatusCode::OK).await
    }

    /// `POST /api/sessions/{id}/links/rotate` as the admin: the session's new staff links.
    pub async fn rotate_links(&self, id: SessionId) -> anyhow::Result<Created> {
        let path = format!("/api/sessions/{id}/links/rotate");
        let res = self
            .request(Method::POST, &path, Some(&self.admin))
            .send()
            .await
            .context(path)?;
        read(res, StatusCode::OK).await
    }

    /// `POST /api/sessions/{id}/state` with `token` (an expert's or an admin's).
    pub async fn set_state(
        &self,
        id: SessionId,
        token: &str,
        state: SessionState,
    ) -> anyhow::Result<Session> {
        let res = self
            .post(
                &format!("/api/sessions/{id}/state"),
                Some(token),
                &StateRequest { state },
            )
            .await?;
        Ok(read::<SessionReply>(res, StatusCode::OK).await?.session)
    }

    /// A request to `path`, with a bearer token if given, for what the helpers do not cover
    /// (extra headers, say).
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.url));
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// POSTs `body` as JSON to `path`, with a bearer token if given.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &(impl Serialize + ?Sized),
    ) -> anyhow::Result<Response> {
        self.send_json(Method::POST, path, token, body).await
    }

    /// PATCHes `path` with `body` as JSON, with a bearer token if given.
    pub async fn patch(
        &self,
        path: &str,
        token: Option<&str>,
        body: &(impl Serialize + ?Sized),
    ) -> anyhow::Result<Response> {
        self.send_json(Method::PATCH, path, token, body).await
    }

    async fn send_json(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &(impl Serialize + ?Sized),
    ) -> anyhow::Result<Response> {
        let what = format!("{method} {path}");
        let req = self.request(method, path, token).json(body);
        req.send().await.context(what)
    }

    /// GETs `path`, with a bearer token if given.
    pub async fn get(&self, path: &str, token: Option<&str>) -> anyhow::Result<Response> {
        let req = self.request(Method::GET, path, token);
        req.send().await.with_context(|| format!("GET {path}"))
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self.get("/metrics", None).await?.text().await?)
    }

    /// The hub socket for `token`, resuming after `since` if given.
    pub fn ws_url(&self, session: SessionId, token: &str, since: Option<u64>) -> WsTarget {
        ws_url(&self.url, session, token, since)
    }

    /// A new patient's socket: joins, connects and reads the snapshot, for a patient whose
    /// token the test does not need.
    pub async fn connect_patient(
        &self,
        session: SessionId,
    ) -> anyhow::Result<(HubClient, Snapshot)> {
        self.connect(session, &self.patient(session).await?).await
    }

    /// Opens the hub socket and reads its first message, which must be a snapshot.
    pub async fn connect(
        &self,
        session: SessionId,
        token: &str,
    ) -> anyhow::Result<(HubClient, Snapshot)> {
        let mut client = HubClient::connect(&self.ws_url(session, token, None)).await?;
        let snapshot = client.snapshot().await?;
        Ok((client, snapshot))
    }
}

/// The body of a response that must have `expected` status, typed; otherwise an error naming
/// the status and the server's error body.
pub async fn read<T: DeserializeOwned>(res: Response, expected: StatusCode) -> anyhow::Result<T> {
    let status = res.status();
    let text = res.text().await.context("reading the body")?;
    if status != expected {
        bail!("expected {expected}, got {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("unexpected body: {text}"))
}

/// The status and error body of a response that must have failed.
pub async fn refused(res: Response) -> anyhow::Result<(StatusCode, ErrorBody)> {
    let status = res.status();
    let text = res.text().await.context("reading the body")?;
    if status.is_success() {
        bail!("expected an error, got {status}: {text}");
    }
    let body = serde_json::from_str(&text).with_context(|| format!("not an error body: {text}"))?;
    Ok((status, body))
}

/// A hub socket to open: its URL, which carries no token, and the token, which goes in the
/// `Sec-WebSocket-Protocol` header as the server's own clients send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsTarget {
    pub url: String,
    pub token: String,
}

/// The hub socket on the server at `base` (`http://…`) for `token`, resuming after `since`.
pub fn ws_url(base: &str, session: SessionId, token: &str, since: Option<u64>) -> WsTarget {
    let base = base.trim_end_matches('/').replacen("http://", "ws://", 1);
    let url = match since {
        Some(s) => format!("{base}/api/sessions/{session}/ws?since={s}"),
        None => format!("{base}/api/sessions/{session}/ws"),
    };
    WsTarget {
        url,
        token: token.to_owned(),
    }
}
