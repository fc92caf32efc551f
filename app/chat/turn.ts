import { AnswerPendingError, newChatCompletionId, type Json, type Lease, type MessageRole, type NewChatCompletion, type NewMessage, type Principal, type SessionInfo, type Store } from '../../db/store.js';
import type { Config } from '../env.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { toNewMessage } from '../messages.js';
import type { AnswerBus } from '../streaming/bus.js';
import type { HistoryWriter } from '../streaming/history-writer.js';
import type { LiveAnswer, LiveAnswers } from '../streaming/live-answer.js';
import type { StreamEnd, StreamObserver } from '../streaming/relay.js';
import { TurnRecorder, type TurnOutcome } from '../streaming/recorder.js';
import { estimatePromptTokens, estimateTokens } from '../tokens.js';
import { readEvents } from '../streaming/stages/sse.js';
import type { ChatMessage, ChatRequest } from './schemas.js';
import { accumulate, emptyStreamState, outcomeOf, parseChatChunk, type ChatEvent, type Usage } from './stream.js';

const TITLE_CHARS = 80;
/**
 * How long a turn waits for the answer it resends to be recorded as ended. A client may send
 * its next turn the moment a stream ends (a tool call answered at once), while the server is
 * still writing that stream's end; normally milliseconds, longer only while the database is slow.
 */
const PENDING_WAIT_MS = 5_000;

function storedRole(role: ChatMessage['role']): MessageRole {
  if (role === 'developer') return 'system';
  if (role === 'function') return 'tool';
  return role;
}

/** A request message as the conversation stores it; its `id` is the client's, kept to match it by later. */
export function toStored(m: ChatMessage): NewMessage {
  const extra: Partial<NewMessage> = {};
  if (typeof m.id === 'string') extra.clientId = m.id;
  if (m.tool_calls != null) extra.toolCalls = m.tool_calls as Json;
  if (m.function_call != null) extra.functionCall = m.function_call as Json;
  // A tool result is only meaningful with the call it answers.
  if (typeof m.tool_call_id === 'string') extra.contentJson = { tool_call_id: m.tool_call_id };
  return toNewMessage(storedRole(m.role), m.content as Parameters<typeof toNewMessage>[1], extra);
}

function titleFrom(messages: ChatMessage[]): string | null {
  const first = messages.find((m) => m.role === 'user');
  const text = first ? toStored(first).content?.trim().replace(/\s+/g, ' ') : '';
  if (!text) return null;
  const chars = Array.from(text);
  return chars.length > TITLE_CHARS ? `${chars.slice(0, TITLE_CHARS - 1).join('')}…` : text;
}

/** Resolves once none of the messages is still being written (or after `ms`), polling with backoff. */
async function untilEnded(store: Store, ids: string[], ms: number): Promise<void> {
  const until = Date.now() + ms;
  for (let attempt = 0; Date.now() < until; attempt++) {
    const messages = await Promise.all(ids.map((id) => store.getMessage(id)));
    if (messages.every((m) => !m || (m.status !== 'streaming' && m.status !== 'draft'))) return;
    await new Promise((r) => setTimeout(r, Math.min(5 * 2 ** attempt, 200)));
  }
}

export interface TurnContext {
  store: Store;
  /** The process's group commit for the writes of running answers. */
  history: HistoryWriter;
  owner: Principal;
  config: Config;
  log: Logger;
  metrics: Metrics;
  /** Lease for the streaming message, so crash recovery knows a live process is writing it. */
  lease: Lease;
  session: SessionInfo;
  /** Where a streamed answer is followed live by watchers in this process, and announced to others. */
  answers: LiveAnswers;
  bus: AnswerBus;
}

/**
 * One proxied exchange, as the conversation records it. The request's messages are matched
 * against the conversation's tree (db/tree.ts): what is already stored is not stored again, and
 * the answer hangs exactly after the messages the upstream is sent, on a new branch when the
 * request edits or regenerates. For a stream, the assistant message is created up front (status
 * `streaming`) and filled as the answer arrives; for a plain request it is written once, when
 * the answer is in.
 */
export class ProxiedTurn {
  /** A streamed answer as this process's watchers follow it (and cancel requests reach it). */
  readonly live: LiveAnswer | null;
  /** The exchange's stored completion (OpenAI's `store`), once its record is written. */
  private completionRecorded = false;

  private constructor(
    private readonly ctx: TurnContext,
    private readonly request: ChatRequest,
    readonly conversationId: string,
    /** The answer's id: a stream's message from the start, a plain request's once it is written. */
    readonly answerId: string,
    readonly stream: boolean,
    /** The message the answer follows: the last of the request's messages as stored. */
    private readonly answerParentId: string | null,
    /** The stored completion the exchange is recorded as; null for a turn that is not a chat completion (a response). */
    private readonly completion: NewChatCompletion | null,
  ) {
    this.live = stream ? ctx.answers.open(answerId) : null;
    this.completionRecorded = stream;
  }

  /** Our id of the exchange's stored completion; null until it is recorded (or when it could not be). */
  get completionId(): string | null {
    return this.completion && this.completionRecorded ? this.completion.id : null;
  }

  /** The stream's assistant message, created with the turn; null for a plain request. */
  get assistantMessageId(): string | null {
    return this.stream ? this.answerId : null;
  }

  static async begin(ctx: TurnContext, request: ChatRequest, conversationId: string | null, stream: boolean): Promise<ProxiedTurn> {
    const { store, owner, config } = ctx;
    // A stream's answer is created with the request's messages, under a known id and a lease,
    // and with it the stored completion that shows it; a plain answer's record comes with it.
    const answerId = crypto.randomUUID();
    const answer = stream ? { id: answerId, role: 'assistant' as const, status: 'streaming' as const, content: '', lease: ctx.lease } : null;
    const completion: NewChatCompletion = {
      id: newChatCompletionId(),
      messageId: answerId,
      model: request.model ?? config.upstream.defaultModel,
      metadata: request.metadata ?? {},
    };
    const recordNow = stream ? { completion } : {};
    // A plain request writes its answer afterwards: keep a place for it under the limit.
    const maxMessages = config.limits.messagesPerConversation - (stream ? 0 : 1);
    const messages = request.messages.map(toStored);
    if (conversationId) {
      const turn = { messages, answer };
      const limits = { maxMessages, maxBytes: config.limits.bytesPerSession, ...recordNow };
      let recorded;
      try {
        recorded = await store.appendTurn(owner, conversationId, turn, { ...limits, deferIfPending: true });
      } catch (err) {
        if (!(err instanceof AnswerPendingError)) throw err;
        await untilEnded(store, err.messageIds, PENDING_WAIT_MS);
        // Matched as they are now: still open after the wait, they are not what the client resends.
        recorded = await store.appendTurn(owner, conversationId, turn, limits);
      }
      return new ProxiedTurn(ctx, request, conversationId, answerId, stream, recorded.answerParentId, completion);
    }
    const created = await store.createConversation(
      owner,
      { title: titleFrom(request.messages), model: request.model ?? config.upstream.defaultModel },
      {
        maxPerSession: config.limits.conversationsPerSession,
        maxBytes: config.limits.bytesPerSession,
        session: ctx.session,
        messages: answer ? [...messages, answer] : messages,
        maxMessages,
        ...recordNow,
      },
    );
    // The first turn is one chain: the answer follows the last message kept (the active leaf before it).
    const parent = answer ? null : created.activeMessageId;
    return new ProxiedTurn(ctx, request, created.id, answerId, stream, parent, completion);
  }

  /**
   * A turn whose messages the caller has recorded itself (a Responses request: its history is a
   * stored path, not matched): the answer follows `answerParentId`; a stream's answer was
   * recorded with them, under `answerId`. No chat completion record is made.
   */
  static recorded(ctx: TurnContext, request: ChatRequest, turn: { conversationId: string; answerId: string; answerParentId: string | null; stream: boolean }): ProxiedTurn {
    return new ProxiedTurn(ctx, request, turn.conversationId, turn.answerId, turn.stream, turn.answerParentId, null);
  }

  /** Watches a relayed stream and records the assistant message from it. */
  observer(): StreamObserver {
    const { history, config, log, metrics, bus } = this.ctx;
    const live = this.live!;
    const messageId = this.assistantMessageId!;
    const recorder = new TurnRecorder({
      writer: history,
      messageId: this.assistantMessageId!,
      flushMs: config.flush.ms,
      flushChars: config.flush.chars,
      retryForMs: config.flush.retryMs,
      log,
      onWrite: (ms, ok) => {
        if (ok) metrics.dbFlushDuration.observe(ms);
        else metrics.dbFlushFailures.inc();
      },
      // Watchers in other processes read what they miss from the database, once it is there.
      onWritten: (chars) => bus.publish(messageId, { kind: 'grew', offset: chars }),
    });
    let skippedLogged = false;
    let state = emptyStreamState;
    // The upstream's id and model, written once they are known, off the path of the bytes.
    let noted: Promise<void> | null = null;
    const note = () => this.noteUpstream(state.id, state.model);
    // The relay hands over whole events: their boundaries are ASCII, so no character is split.
    const decoder = new TextDecoder();
    return {
      push: (events) => {
        const before = state;
        const read = (event: ChatEvent) => {
          // Recorded as stored, so what watchers here read live is what the database will hold.
          if (event.kind === 'chunk' && event.content) recorder.append(live.append(event.content));
          else if (event.kind === 'skipped') {
            metrics.skippedEvents.inc();
            // Once per stream is enough to notice (never the event: it may be the answer's text);
            // the count goes to the final log line.
            if (!skippedLogged) log.warn({ reason: event.reason }, 'skipped an unreadable upstream event');
            skippedLogged = true;
          }
          state = accumulate(state, event);
        };
        readEvents(decoder.decode(events), ({ data }) => read(parseChatChunk(data)), {
          onUnknownField: () => read({ kind: 'skipped', reason: 'unknown-field' }),
        });
        if (state.text.length !== before.text.length || state.toolCalls !== before.toolCalls) {
          live.toolCalls = state.toolCalls;
          live.changed();
        }
        if (!noted && state.id !== null) noted = new Promise<void>((resolve) => setImmediate(resolve)).then(note);
      },
      end: (how: StreamEnd) => {
        const outcome = outcomeOf(how, state);
        const held = live.takeHeld();
        if (held) recorder.append(held);
        if (state.skipped) log.warn({ skipped_events: state.skipped }, 'stream had unreadable events');
        const generated = state.text + state.toolCalls.map((c) => c?.function.arguments ?? '').join('');
        // A stream whose chunks named no id still tells its model.
        if (!noted && state.model !== null) noted = note();
        const finished = this.tokens(state.usage, generated)
          .then((tokens) => recorder.finish({ ...outcome, ...tokens }))
          .finally(() => live.finish());
        return Promise.all([finished, noted]).then(() => {});
      },
    };
  }

  /**
   * Records a complete (non-streaming) answer body, whatever its shape: `not_json` when the body
   * could not be read at all (recorded as an error), `recorded` otherwise.
   */
  async recordAnswer(status: number, bodyText: string): Promise<'recorded' | 'not_json'> {
    let parsed: any;
    try {
      parsed = JSON.parse(bodyText);
    } catch {
      await this.appendAssistant({ role: 'assistant', status: 'error', content: '', finishReason: 'upstream_invalid_response' });
      return 'not_json';
    }
    const choice = parsed?.choices?.[0];
    if (!(status >= 200 && status < 300 && choice)) {
      await this.appendAssistant({ role: 'assistant', status: 'error', content: '', finishReason: status >= 400 ? 'upstream_error' : 'upstream_invalid_response' });
      return 'recorded';
    }
    const content = typeof choice.message?.content === 'string' ? choice.message.content : '';
    const toolCalls = Array.isArray(choice.message?.tool_calls) ? choice.message.tool_calls : null;
    const args = (toolCalls ?? []).map((c: any) => (typeof c?.function?.arguments === 'string' ? c.function.arguments : '')).join('');
    const upstream = {
      upstreamId: typeof parsed.id === 'string' ? parsed.id : null,
      model: typeof parsed.model === 'string' ? parsed.model : (this.completion?.model ?? null),
    };
    this.completionRecorded = await this.appendAssistant(
      {
        id: this.answerId,
        role: 'assistant',
        status: 'final',
        content,
        finishReason: choice.finish_reason ?? null,
        toolCalls,
        functionCall: choice.message?.function_call ?? null,
        ...(await this.tokens(parsed.usage, content + args)),
      },
      this.completion ? { ...this.completion, ...upstream } : undefined,
    );
    return 'recorded';
  }

  /** Records the upstream's id and model on the completion; a failure costs the lookup by upstream id, nothing else. */
  private async noteUpstream(upstreamId: string | null, model: string | null): Promise<void> {
    if (!this.completion) return;
    try {
      await this.ctx.history.note(this.completion.id, { upstreamId, model });
    } catch (err) {
      this.ctx.log.warn({ err, completion_id: this.completion.id }, "could not record the upstream's id of the completion");
    }
  }

  /**
   * Token counts for the answer: the upstream's when it reported them, else an estimate of the
   * prompt and of what was generated. A count that cannot be known is null, never 0.
   */
  private async tokens(usage: Usage | null | undefined, generated: string): Promise<Pick<TurnOutcome, 'tokensIn' | 'tokensOut' | 'tokensSource'>> {
    let counts: Pick<TurnOutcome, 'tokensIn' | 'tokensOut' | 'tokensSource'>;
    if (usage && (typeof usage.prompt_tokens === 'number' || typeof usage.completion_tokens === 'number')) {
      counts = { tokensIn: usage.prompt_tokens ?? null, tokensOut: usage.completion_tokens ?? null, tokensSource: 'provider' };
    } else {
      try {
        counts = {
          tokensIn: await estimatePromptTokens(this.request.messages, { maxChars: this.ctx.config.tokenEstimateMaxChars }),
          tokensOut: await estimateTokens(generated, { maxChars: this.ctx.config.tokenEstimateMaxChars }),
          tokensSource: 'estimated',
        };
      } catch (err) {
        this.ctx.log.warn({ err }, 'token estimate failed; counts left unknown');
        return { tokensIn: null, tokensOut: null, tokensSource: null };
      }
    }
    const source = counts.tokensSource!;
    if (counts.tokensIn != null) this.ctx.metrics.tokens.inc({ direction: 'in', source }, counts.tokensIn);
    if (counts.tokensOut != null) this.ctx.metrics.tokens.inc({ direction: 'out', source }, counts.tokensOut);
    return counts;
  }

  /** The upstream failed before any answer: the exchange ends as an error. */
  async recordFailure(finishReason: string): Promise<void> {
    if (this.assistantMessageId) {
      try {
        await this.ctx.store.finishMessage(this.assistantMessageId, { status: 'error', finishReason });
      } finally {
        this.live?.finish();
      }
      // No completion came of it: like a plain request's, the failure keeps no completion record.
      // Best effort: the client is owed the upstream's error, not this write's.
      this.completionRecorded = false;
      const completion = this.completion;
      if (completion) {
        await this.ctx.store.deleteChatCompletion(completion.id).catch((err: unknown) => {
          this.ctx.log.warn({ err, completion_id: completion.id }, 'could not remove the completion record of a failed exchange');
        });
      }
    } else {
      await this.appendAssistant({ role: 'assistant', status: 'error', content: '', finishReason });
    }
  }

  /** Appends the answer (with its completion record, when it is one); false when that failed. */
  private async appendAssistant(message: NewMessage, completion?: NewChatCompletion): Promise<boolean> {
    try {
      await this.ctx.store.appendMessages(this.ctx.owner, this.conversationId, [{ ...message, id: this.answerId, parentMessageId: this.answerParentId }], {
        // The answer to a turn that was admitted is always kept, even at the limit.
        maxMessages: Number.MAX_SAFE_INTEGER,
        ...(completion && { completion }),
      });
      return true;
    } catch (err) {
      this.ctx.log.error({ err, conversation_id: this.conversationId }, 'could not record the answer');
      return false;
    }
  }
}
