//! What the API and the socket answer with: typed bodies, serialized as they are and described by the
//! same types in the OpenAPI document (so the document cannot drift from the answers).

use netia_projections::{CustomerRow, InboxRow, MessageRow};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

mod attachment;
mod reporting;
pub use attachment::AttachmentView;
pub use reporting::{AiReportView, DayView};

/// Every successful answer wraps its payload in `data`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Data<T> {
    pub data: T,
}

/// A page of a list, with the cursor of the next page (`null` on the last).
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next: Option<String>,
}

/// Every error: a stable code and a sentence for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`, `payload_too_large`,
    /// `invalid`, `rate_limited`, `unavailable` or `internal`.
    pub error: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerSummary {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LastMessage {
    /// The first characters of the last public message.
    pub preview: Option<String>,
    pub sent_at: String,
}

/// A conversation as agents see it in the inbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationView {
    pub id: String,
    pub account_id: String,
    pub customer_id: String,
    pub customer: CustomerSummary,
    pub inbox_id: Option<String>,
    /// `chat`, `email`, `slack`, `sms` or `api`.
    pub source: String,
    pub subject: Option<String>,
    /// `open`, `closed` or `snoozed`.
    pub status: String,
    pub snoozed_until: Option<String>,
    /// `normal` or `priority`.
    pub priority: String,
    pub assignee_id: Option<String>,
    pub archived: bool,
    pub tags: Vec<String>,
    pub created_at: String,
    pub last_activity_at: String,
    /// When anything about the conversation last changed: the value to pass as `updated_after`
    /// on the next sync.
    pub updated_at: String,
    pub last_message: Option<LastMessage>,
    pub message_count: i64,
}

impl From<&InboxRow> for ConversationView {
    fn from(row: &InboxRow) -> Self {
        Self {
            id: row.conversation_id.clone(),
            account_id: row.account_id.clone(),
            customer_id: row.customer_id.clone(),
            customer: CustomerSummary {
                id: row.customer_id.clone(),
                name: row.customer_name.clone(),
                email: row.customer_email.clone(),
            },
            inbox_id: row.inbox_id.clone(),
            source: row.source.clone(),
            subject: row.subject.clone(),
            status: row.status.clone(),
            snoozed_until: row.snoozed_until.clone(),
            priority: row.priority.clone(),
            assignee_id: row.assignee_id.clone(),
            archived: row.archived != 0,
            tags: row
                .tags
                .as_deref()
                .map_or_else(Vec::new, |t| t.split(',').map(str::to_owned).collect()),
            created_at: row.created_at.clone(),
            last_activity_at: row.last_activity_at.clone(),
            updated_at: row.updated_at.clone(),
            last_message: row.last_message_at.as_ref().map(|at| LastMessage {
                preview: row.last_message_preview.clone(),
                sent_at: at.clone(),
            }),
            message_count: row.message_count,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdRef {
    pub id: String,
}

/// A message in Papercups' shape. An agent is named by id only (never by email address).
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    pub conversation_id: String,
    pub account_id: String,
    /// Render it as text, never as HTML; when `format` is `markdown`, a client may render it as
    /// CommonMark with raw HTML left out.
    pub body: String,
    /// `text` or `markdown` (bot replies, and agents' messages posted as Markdown).
    pub format: String,
    /// `customer`, `agent`, `note`, `bot`, `email`, `slack` or `sms`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Notes are for agents only.
    pub private: bool,
    /// `chat`, `email`, `slack` or `sms`.
    pub source: String,
    pub customer_id: Option<String>,
    pub user_id: Option<String>,
    pub customer: Option<IdRef>,
    pub user: Option<IdRef>,
    /// The name of an external agent: someone on the account's side who answered through a
    /// channel without being a Netia user (a Slack member). `null` for customers, agents and the
    /// bot.
    pub author_name: Option<String>,
    pub client_message_id: Option<String>,
    pub sent_at: String,
    pub seen_at: Option<String>,
    pub delivery_status: String,
    /// Position in the conversation: page with `after_version`.
    pub version: i64,
    /// Files sent with the message (the body is then an optional caption).
    pub attachments: Vec<AttachmentView>,
}

impl From<&MessageRow> for MessageView {
    fn from(m: &MessageRow) -> Self {
        let source = match m.kind.as_str() {
            "email" | "slack" | "sms" => m.kind.clone(),
            _ => "chat".to_owned(),
        };
        Self {
            id: m.message_id.clone(),
            conversation_id: m.conversation_id.clone(),
            account_id: m.account_id.clone(),
            body: m.body.clone(),
            format: m.format.clone(),
            kind: m.kind.clone(),
            private: m.private != 0,
            source,
            customer_id: m.customer_id.clone(),
            user_id: m.user_id.clone(),
            customer: m.customer_id.clone().map(|id| IdRef { id }),
            user: m.user_id.clone().map(|id| IdRef { id }),
            author_name: m.author_name.clone(),
            client_message_id: m.client_message_id.clone(),
            sent_at: m.sent_at.clone(),
            seen_at: m.seen_at.clone(),
            delivery_status: m.delivery_status.clone(),
            version: m.version,
            attachments: m.attachment_list().iter().map(AttachmentView::from).collect(),
        }
    }
}

/// A customer as agents see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerView {
    pub id: String,
    pub account_id: String,
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub created_at: String,
    pub last_seen_at: Option<String>,
    pub conversation_count: i64,
    /// The account vouches for the external id: a valid `user_hash` (identity verification) or an
    /// agent entered it.
    pub verified: bool,
}

impl From<&CustomerRow> for CustomerView {
    fn from(c: &CustomerRow) -> Self {
        Self {
            id: c.id.clone(),
            account_id: c.account_id.clone(),
            external_id: c.external_id.clone(),
            email: c.email.clone(),
            name: c.name.clone(),
            phone: c.phone.clone(),
            metadata: serde_json::from_str(&c.metadata).unwrap_or_default(),
            created_at: c.created_at.clone(),
            last_seen_at: c.last_seen_at.clone(),
            verified: c.verified != 0,
            conversation_count: c.conversation_count,
        }
    }
}

/// A new widget customer, with the token the widget uses from now on (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub struct NewCustomerView {
    pub id: String,
    pub account_id: String,
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    /// Whether the identity was proven by `user_hash` (identity verification).
    pub verified: bool,
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MetadataView {
    pub id: String,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

/// A customer's email, as the widget set it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmailView {
    pub id: String,
    pub email: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentifiedView {
    pub customer_id: String,
}

/// A signed-in session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// `Authorization: Bearer <token>` on `/api/*`.
    pub token: String,
    /// Exchanged for a new session at `POST /api/session/renew`; works once.
    pub renew_token: String,
    pub expires_at: Option<String>,
    pub renew_expires_at: Option<String>,
    pub user_id: String,
    pub account_id: String,
    /// The primary inbox (registration of a new account only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbox_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    pub id: String,
    pub email: String,
    pub display_name: String,
    /// `admin`, `member` or `viewer`.
    pub role: String,
    pub account_id: String,
    pub account: AccountRef,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    pub id: String,
    pub name: String,
    /// The secret: shown in this answer only.
    pub key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub display_name: String,
    /// `admin`, `member` or `viewer`.
    pub role: Option<String>,
    pub disabled: bool,
    /// `active` or `invited`.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationCreated {
    /// The invited user's id.
    pub id: String,
    pub email: String,
    pub role: String,
    /// For `POST /api/registration` (`invitation_token`); valid for seven days, once.
    pub token: String,
    pub expires_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationView {
    pub id: String,
    pub email: String,
    pub expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BusinessContextView {
    pub business_name: String,
    pub business_description: String,
    pub instructions: String,
    pub scheduling_link: Option<String>,
    pub llm_enabled: bool,
}

/// What the widget shows (public).
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicWidgetSettings {
    pub account_id: String,
    pub account_name: String,
    pub title: String,
    pub subtitle: String,
    pub primary_color: String,
    pub greeting: String,
    pub new_message_placeholder: String,
    pub show_agent_availability: bool,
    pub is_branding_hidden: bool,
    /// `en`, `fr`, `de`, `es`, or empty (the visitor's browser language).
    pub locale: String,
    /// `minutes`, `hours` or `day`: "We typically reply in a few minutes" (and so on) under the
    /// widget's title; empty: nothing.
    pub reply_time: String,
}

/// The widget settings as admins edit them.
#[derive(Debug, Serialize, ToSchema)]
pub struct WidgetSettingsView {
    pub title: String,
    pub subtitle: String,
    pub primary_color: String,
    pub greeting: String,
    pub new_message_placeholder: String,
    pub show_agent_availability: bool,
    pub is_branding_hidden: bool,
    pub allowed_origins: Vec<String>,
    pub locale: String,
    /// `minutes`, `hours`, `day`, or empty.
    pub reply_time: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CannedResponseView {
    pub id: String,
    pub name: String,
    pub body: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TagView {
    pub name: String,
    /// Conversations carrying it.
    pub conversations: i64,
}

/// Counts for the inbox's filters (open conversations unless named otherwise).
#[derive(Debug, Serialize, ToSchema)]
pub struct CountsView {
    pub open: i64,
    pub closed: i64,
    pub snoozed: i64,
    pub priority: i64,
    pub assigned_to_me: i64,
    pub unassigned: i64,
    pub unread: i64,
}

/// One line of a conversation's history: who did what, when.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryView {
    pub position: i64,
    pub version: i64,
    pub event_id: String,
    pub at: String,
    /// `{"kind": "agent", "user_id": …}`, `{"kind": "customer", …}`, `{"kind": "bot"}` or
    /// `{"kind": "system", "component": …}`; `null` when unknown.
    #[schema(value_type = Option<Object>)]
    pub actor: Value,
    pub event_type: String,
    pub summary: String,
    /// The event this one was written because of (e.g. a bot reply: the customer message).
    pub causation_id: Option<String>,
    /// The chain's id: the request that started it (`X-Request-Id`), or its first event.
    pub correlation_id: Option<String>,
}

/// A conversation's state at an instant, computed from the log, and the events up to it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AsOfView {
    pub id: String,
    pub as_of: String,
    #[schema(value_type = Object)]
    pub state: Value,
    pub events: Vec<HistoryView>,
}

/// `GET /api/conversations/{id}`: the conversation now, or with `as_of` its state then.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ConversationOrAsOf {
    Now(Box<ConversationView>),
    AsOf(AsOfView),
}

/// A conversation's status.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusName {
    Open,
    Closed,
    Snoozed,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriorityName {
    Normal,
    Priority,
}

/// The order of an inbox page.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortName {
    LastActivity,
    CreatedAt,
}

/// Where a conversation came from.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceName {
    Chat,
    Email,
    Slack,
    Sms,
    Gmail,
    Api,
}

/// What a user may do: viewers read, members answer, admins manage.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    Viewer,
    Member,
    Admin,
}
