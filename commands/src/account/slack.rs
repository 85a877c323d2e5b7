//! The account's Slack link: the installation (workspace, bot, sealed token) and which inbox posts
//! to which channel.

use netia_events::account::*;
use serde::{Deserialize, Serialize};

use super::{Account, AccountCommand, AccountError, invalid};

/// A linked Slack workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlackInstallation {
    pub team_id: String,
    pub team_name: String,
    pub bot_user_id: String,
    /// The bot token (`xoxb-…`), sealed.
    pub sealed_bot_token: String,
}

/// A Slack id: an uppercase letter (`T` team, `U`/`W` user, `C`/`G` channel) then 2 to 30
/// uppercase letters or digits.
pub fn is_slack_id(id: &str, kinds: &[char]) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| kinds.contains(&c))
        && (3..=31).contains(&id.len())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

impl Account {
    pub(super) fn evolve_slack(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::SlackInstalled(e) => {
                // Another workspace's channels mean nothing in this one.
                if self.slack.as_ref().is_some_and(|s| s.team_id != e.team_id) {
                    self.slack_channels.clear();
                }
                self.slack = Some(SlackInstallation {
                    team_id: e.team_id.clone(),
                    team_name: e.team_name.clone(),
                    bot_user_id: e.bot_user_id.clone(),
                    sealed_bot_token: e.sealed_bot_token.clone(),
                });
            }
            AccountEvent::SlackUninstalled(_) => {
                self.slack = None;
                self.slack_channels.clear();
            }
            AccountEvent::SlackChannelMapped(e) => {
                self.slack_channels.insert(e.inbox_id, e.channel_id.clone());
            }
            _ => {}
        }
    }

    pub(super) fn decide_slack(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::InstallSlack {
                team_id,
                team_name,
                bot_user_id,
                sealed_bot_token,
                installed_by,
            } => {
                if !is_slack_id(team_id, &['T', 'E']) {
                    return Err(invalid("team_id", "must be a Slack team id"));
                }
                if !is_slack_id(bot_user_id, &['U', 'W', 'B']) {
                    return Err(invalid("bot_user_id", "must be a Slack user id"));
                }
                if sealed_bot_token.is_empty() || sealed_bot_token.len() > 2_000 {
                    return Err(invalid("bot_token", "must be a sealed token"));
                }
                let team_name: String = team_name.chars().filter(|c| !c.is_control()).take(200).collect();
                Ok(vec![AccountEvent::SlackInstalled(SlackInstalled {
                    team_id: team_id.clone(),
                    team_name,
                    bot_user_id: bot_user_id.clone(),
                    sealed_bot_token: sealed_bot_token.clone(),
                    installed_by: *installed_by,
                })])
            }
            AccountCommand::UninstallSlack => match self.slack {
                Some(_) => Ok(vec![AccountEvent::SlackUninstalled(SlackUninstalled {})]),
                None => Ok(Vec::new()),
            },
            AccountCommand::MapSlackChannel {
                inbox_id,
                channel_id,
                channel_name,
            } => {
                if self.slack.is_none() {
                    return Err(AccountError::SlackNotInstalled);
                }
                if Some(*inbox_id) != self.primary_inbox_id {
                    return Err(AccountError::InboxNotFound);
                }
                if !is_slack_id(channel_id, &['C', 'G']) {
                    return Err(invalid("channel_id", "must be a Slack channel id (C…)"));
                }
                if self.slack_channels.get(inbox_id) == Some(channel_id) {
                    return Ok(Vec::new());
                }
                let channel_name = channel_name
                    .as_ref()
                    .map(|n| n.chars().filter(|c| !c.is_control()).take(100).collect());
                Ok(vec![AccountEvent::SlackChannelMapped(SlackChannelMapped {
                    inbox_id: *inbox_id,
                    channel_id: channel_id.clone(),
                    channel_name,
                })])
            }
            _ => Ok(Vec::new()),
        }
    }
}
