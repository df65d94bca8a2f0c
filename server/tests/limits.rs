//! `GET /api/limits` serves the model's constants, public and cacheable.

use oncolive_server::Config;
use oncolive_server::limits::TextLimits;
use oncolive_server::model::{
    MAX_ANSWER_CHARS, MAX_EXPERT_CHARS, MAX_NAME_CHARS, MAX_QUESTION_CHARS, MAX_REASON_CHARS,
    MAX_TITLE_CHARS, MAX_TOPIC_CHARS,
};
use oncolive_testkit::api::read;
use oncolive_testkit::spawn_app;
use reqwest::StatusCode;

#[tokio::test]
async fn limits_are_the_model_constants_and_cacheable() -> anyhow::Result<()> {
    let app = spawn_app(Config::for_tests()).await?;
    // No token: the patient page asks before it has joined.
    let res = app.get("/api/limits", None).await?;
    assert_eq!(
        res.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("public, max-age=3600")
    );
    // The wire names are what the pages read, so they are checked as text, not through the type.
    let body: serde_json::Value = read(res, StatusCode::OK).await?;
    assert_eq!(
        body,
        serde_json::json!({
            "question_chars": MAX_QUESTION_CHARS,
            "reason_chars": MAX_REASON_CHARS,
            "answer_chars": MAX_ANSWER_CHARS,
            "name_chars": MAX_NAME_CHARS,
            "title_chars": MAX_TITLE_CHARS,
            "topic_chars": MAX_TOPIC_CHARS,
            "expert_chars": MAX_EXPERT_CHARS,
        })
    );
    assert_eq!(
        serde_json::from_value::<TextLimits>(body)?,
        oncolive_server::limits::TEXT_LIMITS
    );
    Ok(())
}
