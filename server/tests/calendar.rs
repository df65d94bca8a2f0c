//! `GET /api/sessions/{id}/calendar.ics` over HTTP: the file a phone's calendar imports.

use oncolive_server::config::Config;
use oncolive_server::model::{Moderation, SessionState};
use oncolive_testkit::api::refused;
use oncolive_testkit::spawn_app;
use reqwest::StatusCode;

#[tokio::test]
async fn a_calendar_entry_for_the_patient_link() -> anyhow::Result<()> {
    let app = spawn_app(Config::for_tests()).await?;
    let session = app.create_session(Moderation::Pre).await?;
    let res = app
        .get(&format!("/api/sessions/{}/calendar.ics", session.id), None)
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["content-type"],
        "text/calendar; charset=utf-8"
    );
    assert!(
        res.headers()["content-disposition"]
            .to_str()?
            .starts_with("attachment")
    );
    let ics = res.text().await?.replace("\r\n ", "");
    assert!(
        ics.contains(&format!("UID:{}@oncolive\r\n", session.id)),
        "{ics}"
    );
    assert!(ics.contains(&format!("URL:{}\r\n", session.created.links.patient)));
    assert!(ics.contains("SUMMARY:Screening for colorectal cancer\r\n"));
    assert!(ics.contains("STATUS:CONFIRMED\r\n"));

    // Cancelled before it went live: calendars are told.
    app.set_state(session.id, &session.expert, SessionState::Ended)
        .await?;
    let ics = app
        .get(&format!("/api/sessions/{}/calendar.ics", session.id), None)
        .await?
        .text()
        .await?;
    assert!(ics.contains("STATUS:CANCELLED\r\n"), "{ics}");

    let res = app
        .get(
            "/api/sessions/0193a4f2-6c1e-7b3a-9f2e-5d4c3b2a1908/calendar.ics",
            None,
        )
        .await?;
    assert_eq!(refused(res).await?.0, StatusCode::NOT_FOUND);
    Ok(())
}
