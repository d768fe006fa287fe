//! Outgoing email: a pluggable transport (`lettre`) and the email log
//! (seed 003 `email_logs`).
//!
//! `API_MAIL_URL` picks the transport: `file:<dir>` writes each message as
//! an RFC 5322 `.eml` file into `<dir>` (the local stack's outbox, default
//! `.state/outbox`), `smtp://` / `smtps://user:pass@host:port` sends
//! through an SMTP relay (STARTTLS / TLS, lettre's URL syntax). Every
//! attempt, sent or failed, leaves one [`EmailLog`] with the recipient
//! encrypted and no body (bodies may carry tokens).

use std::path::PathBuf;

use bson::{oid::ObjectId, DateTime};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use schemas::mongo::{collections, EmailLog};

use crate::error::ApiError;
use crypto::Pii;

/// Why the mailer could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum MailConfigError {
    /// `API_MAIL_URL` is neither `file:` nor `smtp(s)://`.
    #[error("API_MAIL_URL must start with file:, smtp:// or smtps://, got {0:?}")]
    Scheme(String),
    /// The outbox directory cannot be created.
    #[error("creating the mail outbox {dir}: {source}")]
    Outbox {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// lettre refused the SMTP URL.
    #[error("API_MAIL_URL: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    /// `API_MAIL_FROM` is not a mailbox (`Name <a@b.c>`).
    #[error("API_MAIL_FROM: {0}")]
    From(#[from] lettre::address::AddressError),
}

enum Transport {
    File(AsyncFileTransport<Tokio1Executor>, PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// Sends mail through the configured transport and logs it.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
}

/// A file attached to an email.
pub struct MailAttachment {
    /// File name (`INV-2026-00001.pdf`).
    pub name: String,
    /// MIME type (`application/pdf`).
    pub content_type: String,
    /// Content.
    pub bytes: Vec<u8>,
}

/// One email to send.
pub struct Outgoing {
    /// Tenant it is sent for.
    pub client_id: ObjectId,
    /// Recipient address (already validated).
    pub to: String,
    /// Subject.
    pub subject: String,
    /// Template name, logged (`verify_email`, `password_reset`, `invoice`).
    pub template: &'static str,
    /// Plain-text body.
    pub text: String,
    /// Attachments.
    pub attachments: Vec<MailAttachment>,
    /// The record it is about (`("invoice", id)`), logged.
    pub related: Option<(&'static str, ObjectId)>,
}

impl Mailer {
    /// Builds the transport named by `url` with sender `from`. Call it
    /// inside a Tokio runtime (the SMTP connection pool spawns on it).
    pub fn new(url: &str, from: &str) -> Result<Self, MailConfigError> {
        let from: Mailbox = from.parse()?;
        let transport = if let Some(dir) = url.strip_prefix("file:") {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir).map_err(|source| MailConfigError::Outbox { dir: dir.clone(), source })?;
            Transport::File(AsyncFileTransport::new(&dir), dir)
        } else if url.starts_with("smtp://") || url.starts_with("smtps://") {
            Transport::Smtp(AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?.build())
        } else {
            return Err(MailConfigError::Scheme(url.to_string()));
        };
        Ok(Mailer { transport, from })
    }

    /// The outbox directory of a `file:` transport.
    pub fn outbox(&self) -> Option<&std::path::Path> {
        match &self.transport {
            Transport::File(_, d) => Some(d),
            Transport::Smtp(_) => None,
        }
    }

    fn build(&self, m: &Outgoing, message_id: &str) -> Result<Message, String> {
        let to: Mailbox = m.to.parse().map_err(|e: lettre::address::AddressError| e.to_string())?;
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.subject.clone())
            .message_id(Some(message_id.to_string()));
        let text = SinglePart::builder().header(ContentType::TEXT_PLAIN).body(m.text.clone());
        let result = if m.attachments.is_empty() {
            builder.singlepart(text)
        } else {
            let mut parts = MultiPart::mixed().singlepart(text);
            for a in &m.attachments {
                let ct = ContentType::parse(&a.content_type).map_err(|e| e.to_string())?;
                parts = parts.singlepart(Attachment::new(a.name.clone()).body(a.bytes.clone(), ct));
            }
            builder.multipart(parts)
        };
        result.map_err(|e| e.to_string())
    }

    /// Sends `m` and writes its [`EmailLog`] into `log_db` (recipient
    /// encrypted with `pii`), counting it in `sent` by template and outcome.
    /// A transport failure is logged as `FAILED` and answered 503
    /// `unavailable`; the log write itself failing is a MongoDB error.
    pub async fn send(
        &self,
        log_db: &mongodb::Database,
        pii: &Pii,
        sent: &prometheus::IntCounterVec,
        m: Outgoing,
    ) -> Result<EmailLog, ApiError> {
        let id = ObjectId::new();
        let message_id = format!("<{}@smartlinks>", id.to_hex());
        let outcome = match self.build(&m, &message_id) {
            Err(e) => Err(e),
            Ok(msg) => match &self.transport {
                Transport::File(t, _) => t.send(msg).await.map(|_| ()).map_err(|e| e.to_string()),
                Transport::Smtp(t) => t.send(msg).await.map(|_| ()).map_err(|e| e.to_string()),
            },
        };
        let log = EmailLog {
            id,
            client_id: m.client_id,
            to_enc: pii.encrypt(&m.to, crypto::Field::new(collections::EMAIL_LOGS, id, "to"))?,
            to_index: pii.email_index(&m.to),
            subject: m.subject.clone(),
            template: m.template.to_string(),
            status: if outcome.is_ok() { "SENT" } else { "FAILED" }.into(),
            error: outcome.as_ref().err().cloned(),
            message_id,
            related_kind: m.related.map(|r| r.0.to_string()),
            related_id: m.related.map(|r| r.1),
            attachments: m.attachments.iter().map(|a| a.name.clone()).collect(),
            created_at: DateTime::now(),
        };
        log_db.collection::<EmailLog>(collections::EMAIL_LOGS).insert_one(&log).await?;
        sent.with_label_values(&[m.template, if outcome.is_ok() { "sent" } else { "failed" }]).inc();
        match outcome {
            Ok(()) => Ok(log),
            Err(e) => {
                tracing::warn!(template = m.template, error = %e, "email not sent");
                Err(ApiError::Unavailable { store: "mail transport", detail: e })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn transports_come_from_the_url() {
        let dir = std::env::temp_dir().join(format!("outbox-{}", ObjectId::new().to_hex()));
        let m = Mailer::new(&format!("file:{}", dir.display()), "Smartlinks <no-reply@localhost>").unwrap();
        assert_eq!(m.outbox(), Some(dir.as_path()));
        assert!(dir.is_dir());
        assert!(Mailer::new("smtp://relay.example.com:587", "no-reply@example.com").unwrap().outbox().is_none());
        assert!(matches!(Mailer::new("ftp://x", "a@b.c"), Err(MailConfigError::Scheme(_))));
        assert!(matches!(Mailer::new("file:/tmp", "not an address"), Err(MailConfigError::From(_))));
        let msg = m
            .build(
                &Outgoing {
                    client_id: ObjectId::new(),
                    to: "ada@example.com".into(),
                    subject: "Invoice".into(),
                    template: "invoice",
                    text: "hello".into(),
                    attachments: vec![MailAttachment {
                        name: "a.pdf".into(),
                        content_type: "application/pdf".into(),
                        bytes: b"%PDF-1.7".to_vec(),
                    }],
                    related: None,
                },
                "<x@smartlinks>",
            )
            .unwrap();
        let raw = String::from_utf8(msg.formatted()).unwrap();
        assert!(raw.contains("filename=\"a.pdf\"") && raw.contains("To: ada@example.com"), "{raw}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
