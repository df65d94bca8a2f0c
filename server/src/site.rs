//! What a deployment tells every page about itself (`GET /api/site`): the safety frame shown on
//! every patient screen, the safe replies of triage, and how long questions are kept.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use crate::AppState;

/// A text in each language the pages speak.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Texts {
    pub zh: String,
    pub en: String,
}

impl Texts {
    fn new(zh: &str, en: &str) -> Texts {
        Texts {
            zh: zh.into(),
            en: en.into(),
        }
    }
}

/// What the author of a triaged question is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriageReplies {
    pub clinic: Texts,
    pub urgent: Texts,
    /// Where to book an outpatient visit, shown with the `clinic` reply.
    pub booking_url: Option<String>,
    /// A number to call, shown with both replies.
    pub hotline: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// Who runs this deployment (the hospital), named on the privacy page.
    pub operator: String,
    /// How patients reach the operator about their data (an address, a phone, a page).
    pub contact: Option<String>,
    /// Shown on the join, live and ended pages and the poster.
    pub disclaimer: Texts,
    pub triage: TriageReplies,
    /// Days after a session ends before its private data is removed.
    pub retention_days: u64,
}

pub const DEFAULT_DISCLAIMER_ZH: &str = "本直播仅供健康科普，不能替代面诊；急症请立即拨打120。";
pub const DEFAULT_DISCLAIMER_EN: &str =
    "For health education only; not a substitute for seeing a doctor. In an emergency call 120.";

impl Default for Site {
    fn default() -> Self {
        Site {
            operator: "OncoLive".into(),
            contact: None,
            disclaimer: Texts::new(DEFAULT_DISCLAIMER_ZH, DEFAULT_DISCLAIMER_EN),
            triage: TriageReplies {
                clinic: Texts::new(
                    "您的问题需要医生当面了解病情后才能回答。请带上检查报告到医院门诊就诊，或预约专科门诊。",
                    "Your question needs a doctor who can examine you and see your reports. Please see your doctor or book an outpatient visit.",
                ),
                urgent: Texts::new(
                    "您描述的情况可能需要紧急处理。请立即拨打120，或尽快前往最近医院的急诊。",
                    "What you describe may need urgent care. Call 120 now or go to the nearest emergency department.",
                ),
                booking_url: None,
                hotline: None,
            },
            retention_days: 30,
        }
    }
}

/// `GET /api/site`: public and the same for everyone, so caches may keep it a while.
pub async fn get(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(app.config.site.clone()),
    )
}
