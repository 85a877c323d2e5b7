//! LLM auto-reply (SPEC §5): a consumer of customer messages that answers with an OpenAI-compatible
//! model unless the account has the LLM off or a person has the conversation.
//!
//! Exactly one reply per customer message: the reply goes through `PostBotReply`, which names the
//! triggering event (a redelivery or a second node decides nothing) and the customer message answered
//! (if the customer wrote again meanwhile, the older answer is dropped: the newer message gets its
//! own). The customer asking for a person (configured phrases) or the model calling its
//! `handoff_to_human` tool hands the conversation over (`HandedToHuman`), and the bot stays silent.
//! When the model still fails after its retries, the fallback message is posted and agents get an
//! `events:` notice.

use std::sync::Arc;
use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionMessageToolCalls, ChatCompletionRequestAssistantMessage,
    ChatCompletionRequestAssistantMessageContent, ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, ChatCompletionTool, ChatCompletionTools, CreateChatCompletionRequest,
    FunctionObject,
};
use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use netia_commands::{Account, Conversation, ConversationCommand, ConversationError};
use netia_events::conversation::{ConversationEvent, HandoffReason};
use netia_events::{Actor, ConversationId, DomainEvent, MessageId, Metadata, RecordedEvent, StreamRef};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::bus::{Consumer, Failure};
use crate::command_bus::{CommandBus, CommandError};
use crate::realtime::Hub;
use crate::store::{EventStore, StreamBound};

/// How the model is called (`LLM_*` variables, `OPENAI_API_KEY`).
#[derive(Debug, Clone)]
pub struct LlmSettings {
    /// `LLM_BASE_URL`, e.g. `http://localhost:11434/v1`; OpenAI's when unset.
    pub base_url: String,
    pub api_key: SecretString,
    pub model: String,
    pub max_tokens: u32,
    pub temperature: f32,
    pub timeout: Duration,
    /// Retries after a failed call (so `1 + max_retries` calls at most).
    pub max_retries: u32,
    /// Messages of history sent with the prompt.
    pub history: usize,
    /// Posted when the model cannot answer.
    pub fallback: String,
    /// Lower-case phrases by which a customer asks for a person.
    pub handoff_phrases: Vec<String>,
    /// Wait before the first retry; doubles after each (429s included).
    pub retry_base: Duration,
}

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_FALLBACK: &str =
    "Sorry, I can't answer right now. A member of our team will get back to you as soon as possible.";
pub const DEFAULT_HANDOFF_PHRASES: &str = "talk to a human,speak to a human,talk to a person,speak to a person,real person,human agent,talk to an agent,speak to an agent";

/// One turn of the conversation as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    User(String),
    Assistant(String),
}

/// What the model is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub system: String,
    pub turns: Vec<Turn>,
}

/// What the model said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Text(String),
    /// It called `handoff_to_human`.
    Handoff,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("rate limited (429)")]
    RateLimited,
    #[error("no answer within the timeout")]
    Timeout,
    #[error("{0}")]
    Failed(String),
}

/// A chat model. [`OpenAi`] is the real one; tests may use a fake server behind it.
#[async_trait]
pub trait LlmClient: Send + Sync + 'static {
    async fn complete(&self, prompt: &Prompt) -> Result<Answer, LlmError>;
}

/// Any OpenAI-compatible server, through async-openai.
pub struct OpenAi {
    client: async_openai::Client<OpenAIConfig>,
    settings: LlmSettings,
}

/// The tool the model may call to hand the conversation to a person.
pub const HANDOFF_TOOL: &str = "handoff_to_human";

impl OpenAi {
    pub fn new(settings: LlmSettings) -> Self {
        let config = OpenAIConfig::new()
            .with_api_base(settings.base_url.trim_end_matches('/'))
            .with_api_key(settings.api_key.expose_secret());
        Self {
            client: async_openai::Client::with_config(config),
            settings,
        }
    }

    #[allow(deprecated)] // `max_tokens`: what OpenAI-compatible servers (Ollama, vLLM, llama.cpp) read
    fn request(&self, prompt: &Prompt) -> CreateChatCompletionRequest {
        let mut messages = vec![ChatCompletionRequestMessage::System(
            ChatCompletionRequestSystemMessage {
                content: ChatCompletionRequestSystemMessageContent::Text(prompt.system.clone()),
                name: None,
            },
        )];
        for turn in &prompt.turns {
            messages.push(match turn {
                Turn::User(text) => ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
                    content: ChatCompletionRequestUserMessageContent::Text(text.clone()),
                    name: None,
                }),
                Turn::Assistant(text) => {
                    ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                        content: Some(ChatCompletionRequestAssistantMessageContent::Text(text.clone())),
                        ..Default::default()
                    })
                }
            });
        }
        let handoff = ChatCompletionTools::Function(ChatCompletionTool {
            function: FunctionObject {
                name: HANDOFF_TOOL.to_owned(),
                description: Some(
                    "Hand the conversation to a human agent: when the customer asks for a person, or when you cannot help."
                        .to_owned(),
                ),
                parameters: Some(json!({"type": "object", "properties": {}})),
                strict: None,
            },
        });
        CreateChatCompletionRequest {
            model: self.settings.model.clone(),
            messages,
            max_tokens: Some(self.settings.max_tokens),
            temperature: Some(self.settings.temperature),
            tools: Some(vec![handoff]),
            ..Default::default()
        }
    }
}

#[async_trait]
impl LlmClient for OpenAi {
    async fn complete(&self, prompt: &Prompt) -> Result<Answer, LlmError> {
        let started = std::time::Instant::now();
        let answer = self.call(prompt).await;
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(LlmError::Timeout) => "timeout",
            Err(LlmError::RateLimited) => "rate_limited",
            Err(_) => "failed",
        };
        metrics::histogram!("netia_llm_request_duration_seconds", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        if answer.is_err() {
            metrics::counter!("netia_llm_failures_total", "reason" => outcome).increment(1);
        }
        answer
    }
}

impl OpenAi {
    /// One chat-completion call (see [`LlmClient::complete`]), counting the tokens it reports.
    async fn call(&self, prompt: &Prompt) -> Result<Answer, LlmError> {
        let chat = self.client.chat();
        let call = chat.create(self.request(prompt));
        let response = match tokio::time::timeout(self.settings.timeout, call).await {
            Err(_) => return Err(LlmError::Timeout),
            Ok(Err(OpenAIError::ApiError(e))) if e.status_code.as_u16() == 429 => return Err(LlmError::RateLimited),
            Ok(Err(e)) => return Err(LlmError::Failed(e.to_string())),
            Ok(Ok(response)) => response,
        };
        if let Some(usage) = &response.usage {
            metrics::counter!("netia_llm_tokens_total", "kind" => "prompt").increment(u64::from(usage.prompt_tokens));
            metrics::counter!("netia_llm_tokens_total", "kind" => "completion")
                .increment(u64::from(usage.completion_tokens));
        }
        let Some(choice) = response.choices.into_iter().next() else {
            return Err(LlmError::Failed("the model returned no choice".into()));
        };
        let wants_handoff = choice.message.tool_calls.iter().flatten().any(|call| match call {
            ChatCompletionMessageToolCalls::Function(f) => f.function.name == HANDOFF_TOOL,
            ChatCompletionMessageToolCalls::Custom(_) => false,
        });
        if wants_handoff {
            return Ok(Answer::Handoff);
        }
        match choice.message.content.map(|c| c.trim().to_owned()) {
            Some(text) if !text.is_empty() => Ok(Answer::Text(text)),
            _ => Err(LlmError::Failed("the model returned an empty answer".into())),
        }
    }
}

/// The system prompt for a business.
pub fn system_prompt(context: &netia_events::account::BusinessContext) -> String {
    let name = if context.business_name.trim().is_empty() {
        "this business"
    } else {
        context.business_name.trim()
    };
    let mut prompt = format!(
        "You are the customer support assistant of {name}, answering a customer in a live chat. \
         Be brief, friendly and accurate; never invent facts about the business. If the customer asks \
         for a person, or you cannot help, call the {HANDOFF_TOOL} tool."
    );
    if !context.business_description.trim().is_empty() {
        prompt.push_str(&format!("\n\nAbout {name}: {}", context.business_description.trim()));
    }
    if !context.instructions.trim().is_empty() {
        prompt.push_str(&format!("\n\nInstructions: {}", context.instructions.trim()));
    }
    if let Some(link) = context.scheduling_link.as_deref().filter(|l| !l.trim().is_empty()) {
        prompt.push_str(&format!("\n\nCustomers can book a call here: {}", link.trim()));
    }
    prompt
}

/// The last `limit` public messages up to and including the event at `version`, as turns (notes
/// are never shown to the model).
pub fn history(events: &[RecordedEvent], version: i64, limit: usize) -> Vec<Turn> {
    let mut turns: Vec<Turn> = events
        .iter()
        .filter(|e| e.version <= version)
        .filter_map(|e| match ConversationEvent::decode(e).ok()? {
            ConversationEvent::CustomerMessagePosted(m) => Some(Turn::User(m.body)),
            ConversationEvent::SmsMessageReceived(m) => Some(Turn::User(m.body)),
            ConversationEvent::AgentMessagePosted(m) => Some(Turn::Assistant(m.body)),
            ConversationEvent::BotMessagePosted(m) => Some(Turn::Assistant(m.body)),
            _ => None,
        })
        .collect();
    let skip = turns.len().saturating_sub(limit);
    turns.drain(..skip);
    turns
}

/// Whether `body` asks for a person (one of `phrases`, case-insensitive).
pub fn asks_for_human(body: &str, phrases: &[String]) -> bool {
    let body = body.to_lowercase();
    phrases.iter().any(|p| !p.is_empty() && body.contains(p.as_str()))
}

/// The consumer: answers customer messages.
pub struct LlmReply {
    pub bus: CommandBus,
    pub store: Arc<dyn EventStore>,
    pub client: Arc<dyn LlmClient>,
    pub settings: LlmSettings,
    pub hub: Option<Arc<Hub>>,
}

fn retry(e: impl std::fmt::Display) -> Failure {
    Failure::Retry(e.to_string())
}

impl LlmReply {
    /// The bot's writes: caused by the customer message they answer (same correlation).
    fn meta(&self, account: netia_events::AccountId, cause: &RecordedEvent) -> Metadata {
        Metadata::new(Actor::System {
            component: "llm".into(),
        })
        .with_account(account)
        .caused_by(cause)
    }

    /// Typing indicator of the bot on the conversation's sockets, on every node.
    fn typing(&self, id: ConversationId, typing: bool) {
        if let Some(hub) = &self.hub {
            let payload = json!({"typing": typing, "conversation_id": id, "bot": true});
            hub.broadcast_ephemeral(&format!("conversation:{id}"), "typing", &payload, None);
        }
    }

    /// Asks the model, retrying timeouts, 429s and errors with exponential backoff: at most
    /// `max_retries` retries, the first after `retry_base`, each later one after twice the wait
    /// before (no cap). The last error when every attempt failed.
    async fn ask(&self, prompt: &Prompt) -> Result<Answer, LlmError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.settings.retry_base)
            .with_factor(2.0)
            .without_max_delay()
            .with_max_times(self.settings.max_retries as usize);
        let mut attempt: u32 = 0;
        (|| self.client.complete(prompt))
            .retry(backoff)
            .notify(|e, _wait| {
                attempt += 1;
                tracing::warn!(attempt, error = %e, "LLM call failed; retrying");
            })
            .await
    }

    async fn hand_over(
        &self,
        id: ConversationId,
        account: netia_events::AccountId,
        cause: &RecordedEvent,
        reason: HandoffReason,
    ) -> Result<(), Failure> {
        let command = ConversationCommand::HandToHuman {
            reason,
            at: chrono::Utc::now(),
        };
        self.bus
            .execute::<Conversation>(id, command, &self.meta(account, cause))
            .await
            .map_err(retry)?;
        Ok(())
    }

    async fn reply(
        &self,
        id: ConversationId,
        account: netia_events::AccountId,
        trigger: &RecordedEvent,
        reply_to: MessageId,
        body: String,
        fallback: bool,
    ) -> Result<(), Failure> {
        let command = ConversationCommand::PostBotReply {
            message_id: MessageId::new(),
            body,
            trigger_event_id: trigger.event_id,
            reply_to: Some(reply_to),
            fallback,
            at: chrono::Utc::now(),
        };
        match self
            .bus
            .execute::<Conversation>(id, command, &self.meta(account, trigger))
            .await
        {
            Ok(_) => Ok(()),
            // A person took the conversation while the model was thinking: nothing to post.
            Err(CommandError::Domain(ConversationError::HandedToHuman)) => Ok(()),
            Err(e) => Err(retry(e)),
        }
    }
}

#[async_trait]
impl Consumer for LlmReply {
    fn name(&self) -> &'static str {
        "llm_reply"
    }

    fn bindings(&self) -> Vec<String> {
        vec!["conversation.CustomerMessagePosted".into()]
    }

    /// Every call timing out, with the backoff between them.
    fn claim_ttl(&self) -> std::time::Duration {
        let calls = self.settings.max_retries.saturating_add(1);
        let waits = (0..self.settings.max_retries).map(|i| self.settings.retry_base.saturating_mul(1 << i.min(16)));
        self.settings
            .timeout
            .saturating_mul(calls)
            .saturating_add(waits.fold(std::time::Duration::ZERO, std::time::Duration::saturating_add))
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), Failure> {
        let Ok(ConversationEvent::CustomerMessagePosted(message)) = ConversationEvent::decode(event) else {
            return Ok(());
        };
        let id: ConversationId = event
            .stream_id
            .parse()
            .map_err(|_| Failure::Permanent(format!("not a conversation id: {}", event.stream_id)))?;
        let (conversation, _) = self.bus.load::<Conversation>(id).await.map_err(retry)?;
        let Some(account_id) = conversation.account_id else {
            return Ok(());
        };
        if conversation.handed_to_human
            || conversation.assignee.is_some()
            || conversation.bot_triggers.contains(&event.event_id)
            || conversation.last_customer_message != Some(message.message_id)
        {
            return Ok(()); // a person has it (replied or assigned), it was answered, or a newer message will be
        }
        let (account, _) = self.bus.load::<Account>(account_id).await.map_err(retry)?;
        if !account.llm_enabled {
            return Ok(());
        }
        if asks_for_human(&message.body, &self.settings.handoff_phrases) {
            return self
                .hand_over(id, account_id, event, HandoffReason::CustomerAsked)
                .await;
        }
        let stream = StreamRef::new(ConversationEvent::STREAM_TYPE, &event.stream_id);
        let events = self
            .store
            .read_stream(&stream, StreamBound::UpToVersion(event.version))
            .await
            .map_err(retry)?;
        let prompt = Prompt {
            system: system_prompt(&account.business_context),
            turns: history(&events, event.version, self.settings.history),
        };
        // Typing is ephemeral: pages forget a typist not heard from for a few seconds, so the
        // bot says it again while the model thinks.
        let answer = {
            let ask = self.ask(&prompt);
            tokio::pin!(ask);
            let mut refresh = tokio::time::interval(crate::realtime::TYPING_REFRESH);
            loop {
                tokio::select! {
                    answer = &mut ask => break answer,
                    _ = refresh.tick() => self.typing(id, true),
                }
            }
        };
        self.typing(id, false);
        match answer {
            Ok(Answer::Text(text)) => self.reply(id, account_id, event, message.message_id, text, false).await,
            Ok(Answer::Handoff) => self.hand_over(id, account_id, event, HandoffReason::Model).await,
            Err(e) => {
                tracing::error!(conversation = %id, error = %e, "LLM failed; posting the fallback message");
                if let Some(hub) = &self.hub {
                    let notice = json!({
                        "type": "llm_error", "conversation_id": id, "error": e.to_string(),
                        "at": chrono::Utc::now(),
                    });
                    hub.broadcast_ephemeral(&format!("events:{account_id}"), "event", &notice, None);
                }
                let fallback = self.settings.fallback.clone();
                self.reply(id, account_id, event, message.message_id, fallback, true)
                    .await
            }
        }
    }
}
