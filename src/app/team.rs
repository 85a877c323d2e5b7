//! What follows from a change to the team.

use netia_commands::{Conversation, ConversationCommand, ConversationError};
use netia_events::{AccountId, ConversationId, Metadata, UserId};
use netia_projections::inbox::InboxOrder;
use netia_projections::{Assignee, InboxProjection, InboxQuery};
use sqlx::AnyPool;

use crate::command_bus::{CommandBus, CommandError};

/// Tries per conversation when other writers keep changing it.
const UNASSIGN_ATTEMPTS: usize = 20;

/// Why unassigning a departed agent's conversations stopped part-way (those already unassigned
/// stay so; running it again finishes the rest).
#[derive(Debug, thiserror::Error)]
pub enum UnassignError {
    #[error("reading the inbox: {0}")]
    Read(#[from] netia_projections::ProjectionError),
    #[error("reading the inbox: {0}")]
    Database(#[from] sqlx::Error),
    #[error("unassigning conversation {conversation}: {source}")]
    Command {
        conversation: ConversationId,
        source: CommandError<ConversationError>,
    },
}

/// Unassigns every conversation of `account` assigned to `user` (open, snoozed, closed or
/// archived, so that none comes back to a person who cannot answer it), each as an
/// `AgentAssigned { assignee: None }` written with `meta` (its causation: the disabling). A
/// conversation reassigned meanwhile to someone else is left alone. Returns how many were
/// unassigned. The inbox read model must have caught up with the log before the call.
pub async fn unassign_departed_agent(
    bus: &CommandBus,
    db: &AnyPool,
    account: AccountId,
    user: UserId,
    meta: &Metadata,
) -> Result<usize, UnassignError> {
    let mut query = InboxQuery {
        account_id: Some(account),
        assignee: Some(Assignee::User(user)),
        include_archived: true,
        // The immutable order: unassigning moves nothing ahead of the cursor.
        order: InboxOrder::Created,
        limit: netia_projections::inbox::MAX_PAGE,
        ..InboxQuery::default()
    };
    let mut unassigned = 0;
    loop {
        let page = {
            let mut conn = db.acquire().await?;
            InboxProjection::list(&mut conn, &query).await?
        };
        for row in &page {
            let Ok(conversation) = row.conversation_id.parse::<ConversationId>() else {
                continue;
            };
            // Assign does not commute, so a concurrent message makes it conflict: decide again
            // on the new state (a reassignment to someone else then leaves it alone).
            for _ in 0..UNASSIGN_ATTEMPTS {
                let (state, _) = bus
                    .load::<Conversation>(conversation)
                    .await
                    .map_err(|source| UnassignError::Command { conversation, source })?;
                if state.assignee != Some(user) {
                    break;
                }
                let command = ConversationCommand::Assign { assignee: None };
                match bus.execute::<Conversation>(conversation, command, meta).await {
                    Ok(_) => {
                        unassigned += 1;
                        break;
                    }
                    Err(CommandError::Conflict { .. }) => continue,
                    Err(source) => return Err(UnassignError::Command { conversation, source }),
                }
            }
        }
        match page.last() {
            Some(last) if page.len() as i64 == query.limit => {
                query.after = Some((last.created_at.clone(), last.conversation_id.clone()));
            }
            _ => return Ok(unassigned),
        }
    }
}
