//! The flags of `serve` for what patients are told and how their questions are screened (see
//! docs/privacy.md). Apart from the rest of `serve`'s flags because they change together.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::config::Config;
use crate::screen::{Screen, ScreenConfig};
use crate::site::{DEFAULT_DISCLAIMER_EN, DEFAULT_DISCLAIMER_ZH, Site, Texts};

#[derive(Debug, Clone, Args)]
pub struct PrivacyArgs {
    /// Days after a session ends before its private data (pending and rejected questions,
    /// original texts, consents, authors) is removed; public questions and answers stay.
    #[arg(long, env = "ONCOLIVE_RETENTION_DAYS", default_value_t = Config::default().retention.as_secs() / 86_400)]
    pub retention_days: u64,
    /// A file of blocked words, one per line (`#` starts a comment); replaces the built-in list.
    #[arg(long, env = "ONCOLIVE_BLOCKED_WORDS_FILE")]
    pub blocked_words_file: Option<PathBuf>,
    /// Words after which a number is a hospital record number, comma-separated (default: the
    /// built-in list: 住院号, 病历号, 门诊号, …).
    #[arg(long, env = "ONCOLIVE_RECORD_NUMBER_CUES", value_delimiter = ',')]
    pub record_number_cues: Option<Vec<String>>,
    /// The hospital or organisation running this deployment, named on the privacy page.
    #[arg(long, env = "ONCOLIVE_OPERATOR", default_value = "OncoLive")]
    pub operator: String,
    /// How patients reach the operator about their data (shown on the privacy page).
    #[arg(long, env = "ONCOLIVE_OPERATOR_CONTACT")]
    pub operator_contact: Option<String>,
    /// The disclaimer on every patient screen and the poster, in Chinese.
    #[arg(long, env = "ONCOLIVE_DISCLAIMER_ZH", default_value = DEFAULT_DISCLAIMER_ZH)]
    pub disclaimer_zh: String,
    /// The disclaimer, in English.
    #[arg(long, env = "ONCOLIVE_DISCLAIMER_EN", default_value = DEFAULT_DISCLAIMER_EN)]
    pub disclaimer_en: String,
    /// Shown with a "needs a clinic visit" reply: where to book.
    #[arg(long, env = "ONCOLIVE_BOOKING_URL")]
    pub booking_url: Option<String>,
    /// Shown with triage replies: a number to call.
    #[arg(long, env = "ONCOLIVE_HOTLINE")]
    pub hotline: Option<String>,
}

impl PrivacyArgs {
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_days.saturating_mul(86_400))
    }

    pub fn screen(&self) -> anyhow::Result<Screen> {
        let mut config = ScreenConfig::default();
        if let Some(cues) = &self.record_number_cues {
            config.record_cues = cues
                .iter()
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect();
        }
        if let Some(path) = &self.blocked_words_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            config = config
                .with_blocked_words_file(&text)
                .with_context(|| format!("in {}", path.display()))?;
        }
        Screen::new(config).context("cannot set up the screen")
    }

    pub fn site(&self) -> Site {
        let defaults = Site::default();
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
        Site {
            operator: self.operator.clone(),
            contact: nonempty(&self.operator_contact),
            disclaimer: Texts {
                zh: self.disclaimer_zh.clone(),
                en: self.disclaimer_en.clone(),
            },
            triage: crate::site::TriageReplies {
                booking_url: nonempty(&self.booking_url),
                hotline: nonempty(&self.hotline),
                ..defaults.triage
            },
            retention_days: self.retention_days,
        }
    }
}
