//! Approver e-mail over SMTP (lettre).

use std::time::Duration;

use countersign_log::InitError;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::CibaConfig;

/// The SMTP client, configured by [`CibaConfig::smtp_url`].
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// The mailer of a configuration, `None` when e-mail is off.
    pub fn new(config: &CibaConfig) -> Result<Option<Mailer>, InitError> {
        let Some(url) = &config.smtp_url else {
            return Ok(None);
        };
        // The URL may hold the SMTP password: errors name the problem, never the URL.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
            .map_err(|e| InitError::Config(format!("--smtp-url is not usable: {e}")))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let from = config
            .smtp_from
            .parse()
            .map_err(|e| InitError::Config(format!("--smtp-from is not an address: {e}")))?;
        Ok(Some(Mailer { transport, from }))
    }
}

impl Mailer {
    /// The sender of every message.
    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    /// Hands `msg` to the SMTP server once.
    pub async fn send(&self, msg: Message) -> Result<(), lettre::transport::smtp::Error> {
        self.transport.send(msg).await.map(|_| ())
    }
}
