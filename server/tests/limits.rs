//! `GET /api/limits` serves the model's constants, public and cacheable.

mod common;

use oncolive_server::model::{
    MAX_ANSWER_CHARS, MAX_EXPERT_CHARS, MAX_NAME_CHARS, MAX_QUESTION_CHARS, MAX_REASON_CHARS,
    MAX_TITLE_CHARS, MAX_TOPIC_CHARS,
};
use serde_json::{Value, json};

#[tokio::test]
async fn limits_are_the_model_constants_and_cacheable() {
    let app = common::spawn_app().await;
    // no token: the patient page asks before it has joined
    let res = app
        .http
        .get(format!("{}/api/limits", app.url))
        .send()
        .await
        .expect("GET /api/limits");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("public, max-age=3600")
    );
    let body: Value = res.json().await.expect("JSON body");
    assert_eq!(
        body,
        json!({
            "question_chars": MAX_QUESTION_CHARS,
            "reason_chars": MAX_REASON_CHARS,
            "answer_chars": MAX_ANSWER_CHARS,
            "name_chars": MAX_NAME_CHARS,
            "title_chars": MAX_TITLE_CHARS,
            "topic_chars": MAX_TOPIC_CHARS,
            "expert_chars": MAX_EXPERT_CHARS,
        })
    );
}
