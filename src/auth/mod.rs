//! Credentials and bearer tokens: argon2 password hashes, and opaque tokens (agent sessions and their
//! renew tokens, personal API keys, widget customer tokens) stored only as SHA-256 digests, with
//! expiry and revocation. Who the holder is (role, disabled) comes from the event log, not from here.

mod passwords;

use chrono::{DateTime, Duration, Utc};
use netia_events::chain::format_time;
use netia_events::{AccountId, CustomerId, UserId};
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, FromRow};

pub use passwords::{MAX_PASSWORD, MIN_PASSWORD};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("an account already uses this email address")]
    EmailTaken,
    #[error(
        "password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters, and neither only spaces nor one character repeated"
    )]
    WeakPassword,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Session,
    Renew,
    ApiKey,
    Customer,
    Invitation,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Session => "session",
            TokenKind::Renew => "renew",
            TokenKind::ApiKey => "api_key",
            TokenKind::Customer => "customer",
            TokenKind::Invitation => "invitation",
        }
    }

    /// Tokens say what they are, which helps people who paste them into the wrong place.
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Session => "nts_",
            TokenKind::Renew => "ntr_",
            TokenKind::ApiKey => "ntk_",
            TokenKind::Customer => "ntc_",
            TokenKind::Invitation => "nti_",
        }
    }

    fn parse(kind: &str) -> Option<Self> {
        [
            Self::Session,
            Self::Renew,
            Self::ApiKey,
            Self::Customer,
            Self::Invitation,
        ]
        .into_iter()
        .find(|k| k.as_str() == kind)
    }
}

/// A token just issued: the secret is shown once and never stored.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub token_id: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A session renewed: the new access and renew tokens, and the id of the session that ended.
#[derive(Debug, Clone)]
pub struct Renewed {
    pub user_id: UserId,
    pub account_id: AccountId,
    pub ended: String,
    pub session: Issued,
    pub renew: Issued,
}

/// Whom a valid token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub kind: TokenKind,
    pub token_id: String,
    pub account_id: AccountId,
    pub user_id: Option<UserId>,
    pub customer_id: Option<CustomerId>,
    /// When the token stops being valid (`None`: until revoked).
    pub expires_at: Option<DateTime<Utc>>,
}

/// A personal API key as its owner lists it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    #[sqlx(rename = "token_id")]
    pub id: String,
    #[sqlx(rename = "label")]
    pub name: Option<String>,
    pub preview: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

#[derive(FromRow)]
struct TokenRow {
    kind: String,
    token_id: String,
    account_id: String,
    user_id: Option<String>,
    customer_id: Option<String>,
    expires_at: Option<String>,
}

#[derive(Clone)]
pub struct Auth {
    db: AnyPool,
    session_ttl: Duration,
    renew_ttl: Duration,
}

/// The SHA-256 of a token, as hex: what is stored and compared, never the token.
pub(crate) fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A random secret of `bytes` bytes, as hex (e.g. the demo account's password).
pub fn random_secret(bytes: usize) -> Option<String> {
    random_hex(bytes).ok()
}

fn random_hex(bytes: usize) -> Result<String, AuthError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| AuthError::Hashing(format!("no randomness: {e}")))?;
    Ok(hex::encode(buf))
}

impl Auth {
    pub fn new(db: AnyPool, session_ttl_seconds: i64, renew_ttl_seconds: i64) -> Self {
        Self {
            db,
            session_ttl: Duration::seconds(session_ttl_seconds),
            renew_ttl: Duration::seconds(renew_ttl_seconds),
        }
    }

    /// Reserves `email` for a new user; fails if anyone has it. Call before appending the user's
    /// registration, and [`Auth::release`] if that append fails.
    pub async fn claim(
        &self,
        user_id: UserId,
        account_id: AccountId,
        email: &str,
        password_hash: &str,
    ) -> Result<(), AuthError> {
        let inserted = sqlx::query(
            "INSERT INTO auth_credentials (user_id, account_id, email, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(user_id.to_string())
        .bind(account_id.to_string())
        .bind(email.trim().to_lowercase())
        .bind(password_hash.to_owned())
        .bind(format_time(Utc::now()))
        .execute(&self.db)
        .await?;
        if inserted.rows_affected() == 1 {
            Ok(())
        } else {
            Err(AuthError::EmailTaken)
        }
    }

    pub async fn release(&self, user_id: UserId) -> Result<(), AuthError> {
        sqlx::query("DELETE FROM auth_credentials WHERE user_id = $1")
            .bind(user_id.to_string())
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// The user with this address and password, if both match.
    pub async fn login(&self, email: &str, password: &str) -> Result<Option<(UserId, AccountId)>, AuthError> {
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT user_id, account_id, password_hash FROM auth_credentials WHERE email = $1")
                .bind(email.trim().to_lowercase())
                .fetch_optional(&self.db)
                .await?;
        let Some((user, account, hash)) = row else {
            Self::verify(passwords::decoy_hash().to_owned(), password).await;
            return Ok(None);
        };
        if !Self::verify(hash, password).await {
            return Ok(None);
        }
        match (user.parse(), account.parse()) {
            (Ok(user), Ok(account)) => Ok(Some((user, account))),
            _ => Ok(None),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn issue(
        &self,
        kind: TokenKind,
        token_id: &str,
        account_id: AccountId,
        user_id: Option<UserId>,
        customer_id: Option<CustomerId>,
        label: Option<&str>,
        ttl: Option<Duration>,
    ) -> Result<Issued, AuthError> {
        let token = format!("{}{}", kind.prefix(), random_hex(32)?);
        let now = Utc::now();
        let expires_at = ttl.map(|ttl| now + ttl);
        sqlx::query(
            "INSERT INTO auth_tokens (token_hash, kind, token_id, account_id, user_id, customer_id, label, preview, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(digest(&token))
        .bind(kind.as_str())
        .bind(token_id.to_owned())
        .bind(account_id.to_string())
        .bind(user_id.map(|u| u.to_string()))
        .bind(customer_id.map(|c| c.to_string()))
        .bind(label.map(str::to_owned))
        .bind(token[..12].to_owned())
        .bind(format_time(now))
        .bind(expires_at.map(format_time))
        .execute(&self.db)
        .await?;
        Ok(Issued {
            token,
            token_id: token_id.to_owned(),
            expires_at,
        })
    }

    /// A new session: an access token and the renew token that replaces it.
    pub async fn start_session(&self, user: UserId, account: AccountId) -> Result<(Issued, Issued), AuthError> {
        let id = uuid::Uuid::now_v7().to_string();
        let session = self
            .issue(
                TokenKind::Session,
                &id,
                account,
                Some(user),
                None,
                None,
                Some(self.session_ttl),
            )
            .await?;
        let renew = self
            .issue(
                TokenKind::Renew,
                &id,
                account,
                Some(user),
                None,
                None,
                Some(self.renew_ttl),
            )
            .await?;
        Ok((session, renew))
    }

    /// Ends the session (access and renew token) a token belongs to.
    pub async fn end_session(&self, token_id: &str) -> Result<(), AuthError> {
        self.revoke(token_id, &["session", "renew"]).await
    }

    /// Exchanges a valid renew token for a new session; the old session ends.
    pub async fn renew(&self, renew_token: &str) -> Result<Option<Renewed>, AuthError> {
        let Some(holder) = self.holder(renew_token, &[TokenKind::Renew]).await? else {
            return Ok(None);
        };
        let Some(user) = holder.user_id else { return Ok(None) };
        // Only one renewal per renew token: whoever revokes it first wins.
        let revoked =
            sqlx::query("UPDATE auth_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL")
                .bind(format_time(Utc::now()))
                .bind(digest(renew_token))
                .execute(&self.db)
                .await?;
        if revoked.rows_affected() != 1 {
            return Ok(None);
        }
        self.end_session(&holder.token_id).await?;
        let (session, renew) = self.start_session(user, holder.account_id).await?;
        Ok(Some(Renewed {
            user_id: user,
            account_id: holder.account_id,
            ended: holder.token_id,
            session,
            renew,
        }))
    }

    pub async fn create_api_key(&self, user: UserId, account: AccountId, name: &str) -> Result<Issued, AuthError> {
        let id = uuid::Uuid::now_v7().to_string();
        self.issue(TokenKind::ApiKey, &id, account, Some(user), None, Some(name), None)
            .await
    }

    pub async fn api_keys(&self, user: UserId) -> Result<Vec<ApiKey>, AuthError> {
        Ok(sqlx::query_as(
            "SELECT token_id, label, preview, created_at, last_used_at, revoked_at FROM auth_tokens \
             WHERE user_id = $1 AND kind = 'api_key' ORDER BY created_at, token_id",
        )
        .bind(user.to_string())
        .fetch_all(&self.db)
        .await?)
    }

    /// Revokes the user's API key `id`; false if the user has no such live key.
    pub async fn revoke_api_key(&self, user: UserId, id: &str) -> Result<bool, AuthError> {
        let revoked = sqlx::query(
            "UPDATE auth_tokens SET revoked_at = $1 WHERE token_id = $2 AND user_id = $3 AND kind = 'api_key' \
             AND revoked_at IS NULL",
        )
        .bind(format_time(Utc::now()))
        .bind(id.to_owned())
        .bind(user.to_string())
        .execute(&self.db)
        .await?;
        Ok(revoked.rows_affected() == 1)
    }

    /// A token for the widget of `customer`; it does not expire (the widget keeps it across visits).
    pub async fn customer_token(&self, customer: CustomerId, account: AccountId) -> Result<Issued, AuthError> {
        let id = uuid::Uuid::now_v7().to_string();
        self.issue(TokenKind::Customer, &id, account, None, Some(customer), None, None)
            .await
    }

    /// An invitation for `user` (already invited in the log) to join `account`, valid for a week.
    pub async fn invitation(&self, user: UserId, account: AccountId, email: &str) -> Result<Issued, AuthError> {
        self.issue(
            TokenKind::Invitation,
            &user.to_string(),
            account,
            Some(user),
            None,
            Some(email),
            Some(Duration::days(7)),
        )
        .await
    }

    /// Pending invitations of an account: (invited user id, email, expires_at).
    pub async fn invitations(&self, account: AccountId) -> Result<Vec<(String, String, String)>, AuthError> {
        Ok(sqlx::query_as(
            "SELECT token_id, label, expires_at FROM auth_tokens WHERE account_id = $1 AND kind = 'invitation' \
             AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at",
        )
        .bind(account.to_string())
        .bind(format_time(Utc::now()))
        .fetch_all(&self.db)
        .await?)
    }

    /// Withdraws (or uses up) the invitation of `user`; false if there was none pending.
    pub async fn end_invitation(&self, account: AccountId, user: UserId) -> Result<bool, AuthError> {
        let ended = sqlx::query(
            "UPDATE auth_tokens SET revoked_at = $1 WHERE token_id = $2 AND account_id = $3 AND kind = 'invitation' \
             AND revoked_at IS NULL",
        )
        .bind(format_time(Utc::now()))
        .bind(user.to_string())
        .bind(account.to_string())
        .execute(&self.db)
        .await?;
        Ok(ended.rows_affected() > 0)
    }

    /// Withdraws every pending invitation to `email`, whichever account sent it: once the address
    /// is registered none of them can be accepted (an address is one user's). Returns how many.
    pub async fn end_invitations_to(&self, email: &str) -> Result<u64, AuthError> {
        let ended = sqlx::query(
            "UPDATE auth_tokens SET revoked_at = $1 WHERE kind = 'invitation' AND label = $2 AND revoked_at IS NULL",
        )
        .bind(format_time(Utc::now()))
        .bind(email.trim().to_lowercase())
        .execute(&self.db)
        .await?;
        Ok(ended.rows_affected())
    }

    /// Whether an address is taken by a registered user.
    pub async fn email_taken(&self, email: &str) -> Result<bool, AuthError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM auth_credentials WHERE email = $1")
            .bind(email.trim().to_lowercase())
            .fetch_one(&self.db)
            .await?;
        Ok(n > 0)
    }

    /// The registered users of an account, by id.
    pub async fn users(&self, account: AccountId) -> Result<Vec<String>, AuthError> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM auth_credentials WHERE account_id = $1 ORDER BY created_at, user_id",
        )
        .bind(account.to_string())
        .fetch_all(&self.db)
        .await?)
    }

    /// Ends every token of a customer (when the customer is deleted).
    pub async fn revoke_customer_tokens(&self, customer: CustomerId) -> Result<(), AuthError> {
        sqlx::query(
            "UPDATE auth_tokens SET revoked_at = $1 WHERE customer_id = $2 AND kind = 'customer' AND revoked_at IS NULL",
        )
        .bind(format_time(Utc::now()))
        .bind(customer.to_string())
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn revoke(&self, token_id: &str, kinds: &[&str]) -> Result<(), AuthError> {
        for kind in kinds {
            sqlx::query(
                "UPDATE auth_tokens SET revoked_at = $1 WHERE token_id = $2 AND kind = $3 AND revoked_at IS NULL",
            )
            .bind(format_time(Utc::now()))
            .bind(token_id.to_owned())
            .bind((*kind).to_owned())
            .execute(&self.db)
            .await?;
        }
        Ok(())
    }

    /// Whom `token` stands for, if it is one of `kinds`, not expired and not revoked.
    pub async fn holder(&self, token: &str, kinds: &[TokenKind]) -> Result<Option<Holder>, AuthError> {
        if token.len() > 200 {
            return Ok(None);
        }
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT kind, token_id, account_id, user_id, customer_id, expires_at FROM auth_tokens \
             WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(digest(token))
        .fetch_optional(&self.db)
        .await?;
        let Some(TokenRow {
            kind,
            token_id,
            account_id: account,
            user_id: user,
            customer_id: customer,
            expires_at,
        }) = row
        else {
            return Ok(None);
        };
        let Some(kind) = TokenKind::parse(&kind).filter(|k| kinds.contains(k)) else {
            return Ok(None);
        };
        let now = format_time(Utc::now());
        if expires_at.as_ref().is_some_and(|at| *at <= now) {
            return Ok(None);
        }
        let expires_at = expires_at
            .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
            .map(|at| at.with_timezone(&Utc));
        if kind == TokenKind::ApiKey {
            sqlx::query("UPDATE auth_tokens SET last_used_at = $1 WHERE token_hash = $2")
                .bind(now)
                .bind(digest(token))
                .execute(&self.db)
                .await?;
        }
        let Ok(account_id) = account.parse() else {
            return Ok(None);
        };
        Ok(Some(Holder {
            kind,
            token_id,
            account_id,
            user_id: user.and_then(|u| u.parse().ok()),
            customer_id: customer.and_then(|c| c.parse().ok()),
            expires_at,
        }))
    }
}
