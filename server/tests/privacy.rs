//! Medical privacy over real sockets and HTTP: what the screen finds never reaches the public,
//! consent before the first question, muting, triage, reason codes, expert profiles, export and
//! the retention. Runs on the in-memory broker and, with `ONCOLIVE_TEST_BROKER=redis`, on Redis.

use std::time::Duration;

use anyhow::{Context, bail};
use oncolive_server::config::Config;
use oncolive_server::domain::Command;
use oncolive_server::export::Export;
use oncolive_server::model::{
    ExpertProfile, Moderation, NewSession, QuestionStatus, ReasonCode, SessionState, Triage,
};
use oncolive_server::protocol::{ErrorCode, ServerMsg};
use oncolive_server::screen::FindingKind;
use oncolive_server::site::Site;
use oncolive_testkit::api::{read, refused};
use oncolive_testkit::hub::HubClient;
use oncolive_testkit::{TestApp, spawn_suite_app};
use reqwest::{Method, StatusCode};
use serde_json::json;
use time::OffsetDateTime;

const PHONE: &str = "13812345678";
const ASKED: &str = "我的电话13812345678，请医生帮我看CT报告";

async fn spawn_app() -> anyhow::Result<TestApp> {
    spawn_suite_app(Config::for_tests()).await
}

/// Every message `client` kept, as the JSON text a client reads.
fn kept_text(client: &HubClient) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&client.events)?)
}

#[tokio::test]
async fn personal_details_reach_staff_and_the_author_but_never_the_public() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.live_session(Moderation::Pre).await?;
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    let author_token = app.patient(s.id).await?;
    let (mut author, _) = app.connect(s.id, &author_token).await?;
    let (mut other, _) = app.connect_patient(s.id).await?;
    other.keep_events();

    let asked = author.ask(ASKED).await?;
    assert!(!asked.text.contains(PHONE), "{asked:?}");
    assert!(asked.text.contains("***"), "{asked:?}");
    assert_eq!(
        asked.original.as_deref(),
        Some(ASKED),
        "the author sees their own"
    );
    assert!(asked.findings.iter().any(|f| f.kind == FindingKind::Phone));
    assert_eq!(asked.status, QuestionStatus::Pending);

    let seen = moderator.recv_question(|q| q.id == asked.id).await?;
    assert_eq!(seen.original.as_deref(), Some(ASKED));
    assert_eq!(seen.author_id, asked.author_id, "staff can mute the author");
    let phone = seen
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::Phone)
        .context("the moderator sees the finding")?;
    let marked: String = ASKED
        .chars()
        .skip(phone.start)
        .take(phone.end - phone.start)
        .collect();
    assert_eq!(marked, PHONE, "offsets are code points of the original");

    // Approved as is: the redacted text is what goes public.
    moderator
        .ok(Command::Approve {
            question: asked.id,
            text: None,
            original: false,
        })
        .await?;
    let public = other.recv_question(|q| q.id == asked.id).await?;
    assert_eq!(public.text, asked.text);
    assert_eq!(public.original, None);
    assert!(public.findings.is_empty() && public.author_id.is_none());
    let own = author
        .recv_question(|q| q.id == asked.id && q.status == QuestionStatus::Approved)
        .await?;
    assert_eq!(own.original.as_deref(), Some(ASKED));

    // Everything another patient can read: events, a snapshot, a resume, the export.
    assert!(!kept_text(&other)?.contains(PHONE));
    let (_, snapshot) = app.connect_patient(s.id).await?;
    assert!(!serde_json::to_string(&snapshot)?.contains(PHONE));
    let late = app.patient(s.id).await?;
    let mut resumed = HubClient::connect(&app.ws_url(s.id, &late, Some(0))).await?;
    resumed.keep_events();
    let first = resumed.recv().await?;
    assert!(matches!(
        first,
        ServerMsg::Resumed { .. } | ServerMsg::Snapshot(_)
    ));
    assert!(!serde_json::to_string(&first)?.contains(PHONE));
    resumed.ping().await?;
    assert!(!kept_text(&resumed)?.contains(PHONE), "resumed events");
    for format in ["md", "csv", "json"] {
        let res = app
            .get(
                &format!("/api/sessions/{}/export?format={format}", s.id),
                Some(&app.admin),
            )
            .await?;
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.text().await?;
        assert!(body.contains("CT"), "{format}: {body}");
        assert!(!body.contains(PHONE), "{format}: {body}");
    }
    Ok(())
}

#[tokio::test]
async fn publishing_the_original_is_an_explicit_choice() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.live_session(Moderation::Pre).await?;
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    let (mut author, _) = app.connect_patient(s.id).await?;
    let (mut other, _) = app.connect_patient(s.id).await?;
    // A number the screen takes for a phone, which the moderator knows to be a hotline.
    let asked = author.ask("医院热线13812345678是多少？").await?;
    let both = Command::Approve {
        question: asked.id,
        text: Some("x".into()),
        original: true,
    };
    assert_eq!(moderator.refused(both).await?.code, ErrorCode::Invalid);
    let approved = moderator
        .ok_question(Command::Approve {
            question: asked.id,
            text: None,
            original: true,
        })
        .await?;
    assert!(approved.original_shown);
    let public = other.recv_question(|q| q.id == asked.id).await?;
    assert!(public.text.contains(PHONE));
    assert!(!public.original_shown, "a staff-only mark");
    Ok(())
}

#[tokio::test]
async fn a_moderators_edit_is_screened_too() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.live_session(Moderation::Pre).await?;
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    let (mut author, _) = app.connect_patient(s.id).await?;
    let asked = author.ask("化疗后白细胞低怎么办").await?;
    let edited = moderator
        .ok_question(Command::Approve {
            question: asked.id,
            text: Some("化疗后白细胞低怎么办？电话13812345678".into()),
            original: false,
        })
        .await?;
    assert!(!edited.text.contains(PHONE), "{edited:?}");
    assert!(edited.edited);
    assert_eq!(edited.original.as_deref(), Some("化疗后白细胞低怎么办"));
    Ok(())
}

#[tokio::test]
async fn post_moderated_questions_with_a_finding_wait_for_review() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.live_session(Moderation::Post).await?;
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    moderator
        .ok(Command::SetBlockedWords {
            words: vec!["神药".into(), "神药".into()],
        })
        .await?;
    let (mut patient, snapshot) = app.connect_patient(s.id).await?;
    assert!(snapshot.session.blocked_words.is_empty(), "staff only");
    let clean = patient.ask("肺结节8毫米要复查吗").await?;
    assert_eq!(clean.status, QuestionStatus::Approved);
    let personal = patient.ask(ASKED).await?;
    assert_eq!(personal.status, QuestionStatus::Pending);
    let blocked = patient.ask("有没有抗癌神药推荐").await?;
    assert_eq!(blocked.status, QuestionStatus::Pending);
    let staff = moderator.recv_question(|q| q.id == blocked.id).await?;
    assert!(
        staff
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::BlockedWord),
        "{staff:?}"
    );
    assert_eq!(
        staff.text, "有没有抗癌神药推荐",
        "blocked words are held, not hidden"
    );

    // The screen before sending: patients are told of personal details only.
    let Ok(ServerMsg::Screened { findings, .. }) = patient.screen("神药 13812345678").await?
    else {
        bail!("screen refused");
    };
    let kinds: Vec<_> = findings.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, vec![FindingKind::Phone]);
    let too_long = "字".repeat(501);
    assert_eq!(
        patient.screen(&too_long).await?.err().map(|e| e.code),
        Some(ErrorCode::Invalid)
    );
    let refused = moderator
        .refused(Command::SetBlockedWords {
            words: (0..101).map(|i| format!("w{i}")).collect(),
        })
        .await?;
    assert_eq!(refused.code, ErrorCode::Invalid);
    Ok(())
}

#[tokio::test]
async fn a_patient_consents_once_before_the_first_question() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.live_session(Moderation::Pre).await?;
    let token = app.patient(s.id).await?;
    let (mut patient, snapshot) = app.connect(s.id, &token).await?;
    patient.auto_consent = false;
    assert_eq!(snapshot.you.consented_at, None);
    let ask = Command::Ask {
        text: "HPV疫苗几岁能打".into(),
    };
    assert_eq!(
        patient.refused(ask.clone()).await?.code,
        ErrorCode::ConsentRequired
    );
    let at = patient.consent().await?;
    assert!((OffsetDateTime::now_utc() - at).whole_seconds().abs() < 60);
    assert_eq!(patient.consent().await?, at, "the first time is kept");
    patient.ok(ask).await?;
    let (_, again) = app.connect(s.id, &token).await?;
    assert_eq!(
        again.you.consented_at,
        Some(at),
        "remembered across sockets"
    );
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    assert_eq!(
        moderator
            .consent_reply()
            .await?
            .err()
            .context("refused")?
            .code,
        ErrorCode::Forbidden,
        "only patients consent"
    );
    Ok(())
}

#[tokio::test]
async fn a_muted_patient_is_refused_and_their_waiting_questions_leave_the_queue()
-> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.live_session(Moderation::Pre).await?;
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    let token = app.patient(s.id).await?;
    let (mut noisy, _) = app.connect(s.id, &token).await?;
    let (mut other, _) = app.connect_patient(s.id).await?;
    let first = noisy.ask("广告一").await?;
    let second = noisy.ask("广告二").await?;
    let kept = other.ask("结肠镜检查前怎么准备").await?;
    let author = first.author_id.context("the author sees their id")?;

    moderator
        .ok(Command::Mute {
            author,
            muted: true,
        })
        .await?;
    for id in [first.id, second.id] {
        let q = moderator
            .recv_question(|q| q.id == id && q.status == QuestionStatus::Rejected)
            .await?;
        assert_eq!(q.reason_code, Some(ReasonCode::Muted));
    }
    let refused = noisy
        .refused(Command::Ask {
            text: "again".into(),
        })
        .await?;
    assert_eq!(refused.code, ErrorCode::Muted);
    // The mute follows the patient's id: a new socket with the same token is still muted.
    let (_, again) = app.connect(s.id, &token).await?;
    assert!(again.you.muted);
    assert!(
        again.session.muted.is_empty(),
        "patients do not see the list"
    );
    let (_, staff) = app.connect(s.id, &s.moderator).await?;
    assert!(staff.session.muted.contains(&author));
    let others = staff.questions.iter().find(|q| q.id == kept.id);
    assert_eq!(
        others.map(|q| q.status),
        Some(QuestionStatus::Pending),
        "others' questions stay"
    );

    moderator
        .ok(Command::Mute {
            author,
            muted: false,
        })
        .await?;
    noisy.ask("谢谢医生").await?;
    Ok(())
}

#[tokio::test]
async fn triage_and_reason_codes_reach_the_author_only() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.live_session(Moderation::Post).await?;
    let (mut expert, _) = app.connect(s.id, &s.expert).await?;
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    let (mut author, _) = app.connect_patient(s.id).await?;
    let (mut other, _) = app.connect_patient(s.id).await?;
    let asked = author.ask("胸口剧痛喘不上气怎么办").await?;
    expert
        .ok(Command::Triage {
            question: asked.id,
            tag: Some(Triage::Urgent),
        })
        .await?;
    let own = author
        .recv_question(|q| q.id == asked.id && q.triage.is_some())
        .await?;
    assert_eq!(own.triage, Some(Triage::Urgent));
    let public = other
        .recv_question(|q| q.id == asked.id && q.status == QuestionStatus::Approved)
        .await?;
    assert_eq!(public.triage, None);
    let (_, snap) = app.connect_patient(s.id).await?;
    assert!(snap.questions.iter().all(|q| q.triage.is_none()));

    let off = author.ask("你们医院停车费多少").await?;
    let neither = Command::Reject {
        question: off.id,
        reason: None,
        code: None,
    };
    assert_eq!(moderator.refused(neither).await?.code, ErrorCode::Invalid);
    moderator
        .ok(Command::Reject {
            question: off.id,
            reason: None,
            code: Some(ReasonCode::OffTopic),
        })
        .await?;
    let rejected = author
        .recv_question(|q| q.id == off.id && q.status == QuestionStatus::Rejected)
        .await?;
    assert_eq!(rejected.reason_code, Some(ReasonCode::OffTopic));
    assert_eq!(rejected.reason, None);
    Ok(())
}

#[tokio::test]
async fn a_display_name_with_personal_details_is_refused() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.live_session(Moderation::Pre).await?;
    let res = app
        .post(
            &format!("/api/sessions/{}/join", s.id),
            None,
            &json!({"name": "张阿姨13812345678"}),
        )
        .await?;
    let (status, body) = refused(res).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.error.message.contains("phone"),
        "{}",
        body.error.message
    );
    app.join(s.id, Some("张阿姨")).await?;
    Ok(())
}

#[tokio::test]
async fn the_licence_number_is_never_shown_in_full() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let profile = ExpertProfile {
        name: "陈医生".into(),
        title: "主任医师".into(),
        hospital: "省肿瘤医院".into(),
        department: "胸外科".into(),
        licence: "110440000123456".into(),
        verified: true,
    };
    let created = app
        .create(&NewSession {
            title: "肺癌筛查".into(),
            topic: String::new(),
            expert_name: "陈医生".into(),
            scheduled_start: OffsetDateTime::now_utc(),
            moderation: Moderation::Pre,
            expert_profile: Some(profile.clone()),
            record: None,
            videos: Vec::new(),
        })
        .await?;
    let id = created.session.id;
    assert_eq!(
        created.session.expert_profile.as_ref(),
        Some(&profile),
        "the host sees what they typed"
    );
    let masked = "***********3456";
    let info = app.session(id).await?;
    let shown = info.session.expert_profile.context("public profile")?;
    assert_eq!(shown.licence, masked);
    assert!(shown.verified && shown.hospital == "省肿瘤医院");
    let listed = app.sessions().await?;
    let listed = listed.iter().find(|s| s.id == id).context("listed")?;
    assert_eq!(
        listed.expert_profile.as_ref().map(|p| p.licence.as_str()),
        Some(masked)
    );
    let (_, snapshot) = app.connect_patient(id).await?;
    assert!(!serde_json::to_string(&snapshot)?.contains("123456"));
    let (_, staff) = app.connect(id, &created.tokens.moderator).await?;
    assert!(!serde_json::to_string(&staff)?.contains("123456"));

    let res = app
        .patch(
            &format!("/api/sessions/{id}"),
            Some(&app.admin),
            &json!({"expert_profile": {"name": "", "licence": "x"}}),
        )
        .await?;
    assert_eq!(refused(res).await?.0, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test]
async fn the_export_holds_public_answers_only_and_needs_the_host() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.live_session(Moderation::Pre).await?;
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    let (mut expert, _) = app.connect(s.id, &s.expert).await?;
    let (mut patient, _) = app.connect_patient(s.id).await?;
    let public = patient.ask("=1+1 结肠镜要麻醉吗, \"无痛\"").await?;
    let waiting = patient.ask("还在等审核的问题").await?;
    moderator
        .ok(Command::Approve {
            question: public.id,
            text: None,
            original: false,
        })
        .await?;
    expert
        .ok(Command::Answered {
            question: public.id,
            answer: Some("可以选择无痛肠镜。".into()),
        })
        .await?;
    let path = format!("/api/sessions/{}/export?format=json", s.id);
    let export: Export = read(app.get(&path, Some(&app.admin)).await?, StatusCode::OK).await?;
    let ids: Vec<_> = export.questions.iter().map(|q| q.id).collect();
    assert_eq!(ids, vec![public.id], "{} is not public", waiting.id);
    assert_eq!(
        export.questions[0].answer.as_deref(),
        Some("可以选择无痛肠镜。")
    );
    let csv = app
        .get(
            &format!("/api/sessions/{}/export?format=csv", s.id),
            Some(&app.admin),
        )
        .await?;
    assert!(
        csv.headers()[reqwest::header::CONTENT_DISPOSITION]
            .to_str()?
            .starts_with("attachment")
    );
    let csv = csv.text().await?;
    assert!(
        csv.contains("\"'=1+1 结肠镜要麻醉吗, \"\"无痛\"\"\""),
        "quoted, and never a formula: {csv}"
    );
    let patient_token = app.patient(s.id).await?;
    let res = app.get(&path, Some(&patient_token)).await?;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app
        .get(
            &format!("/api/sessions/{}/export?format=pdf", s.id),
            Some(&app.admin),
        )
        .await?;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test]
async fn the_retention_removes_what_is_private_and_keeps_the_public_answers() -> anyhow::Result<()>
{
    let config = Config {
        retention: Duration::ZERO,
        retention_check: Duration::from_millis(100),
        ..Config::for_tests()
    };
    let app = spawn_suite_app(config).await?;
    let s = app.live_session(Moderation::Pre).await?;
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    let token = app.patient(s.id).await?;
    let (mut patient, _) = app.connect(s.id, &token).await?;
    let public = patient.ask(ASKED).await?;
    let rejected = patient.ask("rejected one").await?;
    let pending = patient.ask("pending one").await?;
    moderator
        .ok(Command::Approve {
            question: public.id,
            text: None,
            original: false,
        })
        .await?;
    moderator
        .ok(Command::Reject {
            question: rejected.id,
            reason: Some("no".into()),
            code: None,
        })
        .await?;
    app.set_state(s.id, &s.expert, SessionState::Ended).await?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let scrubbed = loop {
        let info = app.session(s.id).await?;
        if info.session.scrubbed_at.is_some() {
            break info.session;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("not scrubbed within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(scrubbed.scrubbed_at.is_some());
    let (_, staff) = app.connect(s.id, &s.moderator).await?;
    let ids: Vec<_> = staff.questions.iter().map(|q| q.id).collect();
    assert_eq!(
        ids,
        vec![public.id],
        "{} and {} go",
        rejected.id,
        pending.id
    );
    let q = &staff.questions[0];
    assert!(q.author_id.is_none() && q.original.is_none() && q.findings.is_empty());
    assert!(!serde_json::to_string(&staff)?.contains(PHONE));
    // The patient's own view no longer knows them either.
    let (_, own) = app.connect(s.id, &token).await?;
    assert_eq!(own.you.consented_at, None, "consents are gone");
    assert!(own.questions.iter().all(|q| q.original.is_none()));
    // A client resuming from before gets a snapshot: the old log held staff events.
    let mut late = HubClient::connect(&app.ws_url(s.id, &token, Some(1))).await?;
    assert!(matches!(late.recv().await?, ServerMsg::Snapshot(_)));
    let export = app
        .get(
            &format!("/api/sessions/{}/export?format=md", s.id),
            Some(&app.admin),
        )
        .await?
        .text()
        .await?;
    assert!(export.contains("CT"), "{export}");
    Ok(())
}

#[tokio::test]
async fn the_host_deletes_a_session_and_everything_of_it() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.live_session(Moderation::Pre).await?;
    let (mut patient, _) = app.connect_patient(s.id).await?;
    patient.ask("q").await?;
    let path = format!("/api/sessions/{}", s.id);
    let res = app
        .request(Method::DELETE, &path, Some(&s.moderator))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "the host only");
    let res = app
        .request(Method::DELETE, &path, Some(&app.admin))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, None).await?.status(), StatusCode::NOT_FOUND);
    let res = app
        .request(Method::DELETE, &path, Some(&app.admin))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn the_site_settings_carry_the_disclaimer_in_both_languages() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let res = app.get("/api/site", None).await?;
    assert!(
        res.headers()[reqwest::header::CACHE_CONTROL]
            .to_str()?
            .contains("max-age")
    );
    let site: Site = read(res, StatusCode::OK).await?;
    assert_eq!(
        site.disclaimer.zh,
        "本直播仅供健康科普，不能替代面诊；急症请立即拨打120。"
    );
    assert!(site.disclaimer.en.contains("call 120"));
    assert_eq!(site.retention_days, 30);
    assert!(site.triage.urgent.zh.contains("120"));
    Ok(())
}

#[tokio::test]
async fn a_new_question_names_its_likely_duplicates_to_staff_only() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.live_session(Moderation::Pre).await?;
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    let (mut a, _) = app.connect_patient(s.id).await?;
    let (mut b, _) = app.connect_patient(s.id).await?;
    let first = a.ask("肺结节8毫米要做手术吗？").await?;
    let unrelated = a.ask("HPV疫苗几岁可以打").await?;
    let rejected = a.ask("肺结节8毫米要做手术吗").await?;
    moderator
        .ok(Command::Reject {
            question: rejected.id,
            reason: None,
            code: Some(ReasonCode::Duplicate),
        })
        .await?;
    moderator
        .ok(Command::Approve {
            question: first.id,
            text: None,
            original: false,
        })
        .await?;
    let again = b.ask("肺结节8毫米需要做手术吗").await?;
    assert!(again.similar.is_empty(), "not for patients: {again:?}");
    let staff = moderator.recv_question(|q| q.id == again.id).await?;
    let ids: Vec<_> = staff.similar.iter().map(|s| s.id).collect();
    assert_eq!(
        ids.first(),
        Some(&first.id),
        "{ids:?} (not {} nor the rejected {})",
        unrelated.id,
        rejected.id
    );
    assert!(!ids.contains(&rejected.id) && !ids.contains(&unrelated.id));
    // One key merges it into the first suggestion.
    moderator
        .ok(Command::Merge {
            question: again.id,
            into: first.id,
        })
        .await?;
    Ok(())
}
