//! An external id is unique per account (SPEC §1 "identify"): the claim stream of each
//! (account, external id) decides who holds it.

use netia_events::external_id::{ExternalIdClaimed, ExternalIdEvent, ExternalIdReleased};
use netia_events::{AccountId, CustomerId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ExternalIdCommand {
    /// `customer_id` takes the id; a no-op if it holds it already.
    Claim {
        account_id: AccountId,
        external_id: String,
        customer_id: CustomerId,
    },
    /// `customer_id` lets the id go; a no-op if it does not hold it.
    Release { customer_id: CustomerId },
}

impl crate::Commutes for ExternalIdCommand {
    /// A claim decided on stale state could take an id someone else just took: never retried.
    fn commutes(&self) -> bool {
        matches!(self, ExternalIdCommand::Release { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalIdError {
    #[error("this external_id already belongs to customer {holder}")]
    Taken { holder: CustomerId },
}

/// Who holds the id now, if anyone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExternalId {
    pub holder: Option<CustomerId>,
}

impl ExternalId {
    pub fn evolve(&mut self, event: &ExternalIdEvent) {
        match event {
            ExternalIdEvent::ExternalIdClaimed(e) => self.holder = Some(e.customer_id),
            ExternalIdEvent::ExternalIdReleased(_) => self.holder = None,
        }
    }
}

impl crate::Decide for ExternalId {
    fn subject(&self) -> Option<String> {
        self.holder.map(|c| c.to_string())
    }

    fn decide(&self, command: &ExternalIdCommand) -> Result<Vec<ExternalIdEvent>, ExternalIdError> {
        match (command, self.holder) {
            (ExternalIdCommand::Claim { customer_id, .. }, Some(holder)) if holder == *customer_id => Ok(Vec::new()),
            (ExternalIdCommand::Claim { .. }, Some(holder)) => Err(ExternalIdError::Taken { holder }),
            (
                ExternalIdCommand::Claim {
                    account_id,
                    external_id,
                    customer_id,
                },
                None,
            ) => Ok(vec![ExternalIdEvent::ExternalIdClaimed(ExternalIdClaimed {
                account_id: *account_id,
                external_id: external_id.clone(),
                customer_id: *customer_id,
            })]),
            (ExternalIdCommand::Release { customer_id }, Some(holder)) if holder == *customer_id => {
                Ok(vec![ExternalIdEvent::ExternalIdReleased(ExternalIdReleased {
                    customer_id: *customer_id,
                })])
            }
            (ExternalIdCommand::Release { .. }, _) => Ok(Vec::new()),
        }
    }
}

crate::aggregate!(
    ExternalId,
    "customer_external_id",
    ExternalIdCommand,
    ExternalIdEvent,
    ExternalIdError
);

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;

    const ACCOUNT: AccountId = AccountId(Uuid::from_u128(1));
    const ADA: CustomerId = CustomerId(Uuid::from_u128(2));
    const EVE: CustomerId = CustomerId(Uuid::from_u128(3));

    fn claim(customer_id: CustomerId) -> ExternalIdCommand {
        ExternalIdCommand::Claim {
            account_id: ACCOUNT,
            external_id: "user-42".into(),
            customer_id,
        }
    }

    fn claimed(customer_id: CustomerId) -> ExternalIdEvent {
        ExternalIdEvent::ExternalIdClaimed(ExternalIdClaimed {
            account_id: ACCOUNT,
            external_id: "user-42".into(),
            customer_id,
        })
    }

    fn released(customer_id: CustomerId) -> ExternalIdEvent {
        ExternalIdEvent::ExternalIdReleased(ExternalIdReleased { customer_id })
    }

    #[test]
    fn a_free_id_is_claimed() {
        TestFramework::<ExternalId>::with(())
            .given_no_previous_events()
            .when(claim(ADA))
            .then_expect_events(vec![claimed(ADA)]);
    }

    #[test]
    fn an_id_held_by_another_customer_is_refused() {
        TestFramework::<ExternalId>::with(())
            .given(vec![claimed(ADA)])
            .when(claim(EVE))
            .then_expect_error(ExternalIdError::Taken { holder: ADA });
    }

    #[test]
    fn claiming_ones_own_id_again_is_a_no_op() {
        TestFramework::<ExternalId>::with(())
            .given(vec![claimed(ADA)])
            .when(claim(ADA))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_released_id_can_be_claimed_by_another() {
        TestFramework::<ExternalId>::with(())
            .given(vec![claimed(ADA), released(ADA)])
            .when(claim(EVE))
            .then_expect_events(vec![claimed(EVE)]);
    }

    #[test]
    fn only_the_holder_releases() {
        TestFramework::<ExternalId>::with(())
            .given(vec![claimed(ADA)])
            .when(ExternalIdCommand::Release { customer_id: EVE })
            .then_expect_events(vec![]);
    }
}
