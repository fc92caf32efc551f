/**
 * The persistence contract, in domain terms. Drizzle stays below this line: routes and the
 * streaming code only ever see these types.
 */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };
/** OpenAI's metadata: string keys, string values. */
export type StringMap = { [key: string]: string };

export const messageRoles = ['system', 'user', 'assistant', 'tool'] as const;
export type MessageRole = (typeof messageRoles)[number];
export const messageStatuses = ['draft', 'streaming', 'final', 'error'] as const;
export type MessageStatus = (typeof messageStatuses)[number];

/** Where a message's token counts came from: the upstream's report, or our tokenizer. */
export type TokensSource = 'provider' | 'estimated';
export type Consent = 'granted' | 'denied';

/**
 * Who is asking. Anonymous callers are their session; once users exist, a signed-in caller owns
 * what carries its user id, whichever session created it.
 */
export interface Principal {
  sessionId: string;
  userId: string | null;
}

/** What a principal may do with a conversation: its owner anything, a share what its role allows. */
export type Access = 'owner' | 'editor' | 'viewer';
export const shareRoles = ['viewer', 'editor'] as const;
export type ShareRole = (typeof shareRoles)[number];

export interface User {
  id: string;
  name: string;
  /** The identity provider's `iss` and `sub` for a user who signs in with a JWT; null otherwise. */
  issuer: string | null;
  subject: string | null;
  isAdmin: boolean;
  createdAt: Date;
}

export interface NewUser {
  name: string;
  issuer?: string | null;
  subject?: string | null;
  isAdmin?: boolean;
}

export interface ApiKey {
  id: string;
  userId: string;
  name: string | null;
  /** The first characters of the key, shown to tell keys apart; the key itself is never stored. */
  prefix: string;
  /** SHA-256 of the whole key, hex. */
  hash: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  expiresAt: Date | null;
  revokedAt: Date | null;
}

export interface NewApiKey {
  userId: string;
  name?: string | null;
  prefix: string;
  hash: string;
  expiresAt?: Date | null;
}

export interface Share {
  conversationId: string;
  userId: string;
  role: ShareRole;
  createdAt: Date;
}

/** What erasing a user removed. */
export interface Erasure {
  conversations: number;
  messages: number;
  apiKeys: number;
  shares: number;
}

export interface UsageRow {
  /** The day (YYYY-MM-DD, UTC) or model the row sums; null for the total or a conversation without a model. */
  key: string | null;
  tokensIn: number;
  tokensOut: number;
  /** Assistant messages: one per proxied exchange. */
  requests: number;
}

export interface SessionInfo {
  userAgent?: string | null;
  ipHash?: string | null;
}

export interface Conversation {
  id: string;
  sessionId: string;
  userId: string | null;
  title: string | null;
  model: string | null;
  metadata: JsonObject;
  lastSeq: number;
  /**
   * The leaf of the branch shown as the conversation: its path from the root is the conversation
   * as it stands. Null while the conversation has no message.
   */
  activeMessageId: string | null;
  /** Bytes its messages hold (text, parts, tool calls); streamed answers count once finished. */
  storedBytes: number;
  createdAt: Date;
  updatedAt: Date;
  deletedAt: Date | null;
  /** The id it had in the file it was imported from, when that id was another owner's here. */
  importSourceId: string | null;
}

export interface Message {
  id: string;
  conversationId: string;
  role: MessageRole;
  status: MessageStatus;
  content: string;
  contentJson: Json | null;
  seq: number;
  /** The message this one follows in its branch; null for a first message (a root). */
  parentMessageId: string | null;
  /** The client's own id for the message (`id` on a chat message), matched on later requests. */
  clientId: string | null;
  /**
   * SHA-256 of what the message says (fingerprintOf in db/fingerprint.ts), to match a request's
   * history against the tree; null until known (a streamed answer, a row of an older version).
   */
  fingerprint: string | null;
  tokensIn: number | null;
  tokensOut: number | null;
  tokensSource: TokensSource | null;
  finishReason: string | null;
  toolCalls: Json | null;
  functionCall: Json | null;
  createdAt: Date;
  updatedAt: Date;
  leaseOwner: string | null;
  leaseExpiresAt: Date | null;
  /** When someone asked to stop this answer; its writer stops it (see requestCancel). */
  cancelRequestedAt: Date | null;
}

/** A message with its place among its siblings (the messages of the same parent, by seq), for "2 / 3". */
export interface PlacedMessage extends Message {
  siblingCount: number;
  /** 0-based, in seq order. */
  siblingIndex: number;
}

/**
 * A claim on a message still being written: which server process holds it (the `lease_owner`
 * column) and until when. Not to be confused with the principal who owns a conversation.
 */
export interface Lease {
  holder: string;
  expiresAt: Date;
}

/** A conversation as one principal sees it: with what that principal may do with it. */
export interface AccessibleConversation extends Conversation {
  access: Access;
  /** The assistant message being generated right now (status `streaming`), if any: derived, never stored. */
  streamingMessageId: string | null;
}

/** A stretch of a message's stored text, with how the message stands, read in one snapshot. */
export interface MessageText {
  conversationId: string;
  role: MessageRole;
  status: MessageStatus;
  /** Content from the code point asked for, at most as many code points as asked for. */
  text: string;
  finishReason: string | null;
  toolCalls: Json | null;
}

/**
 * Messages between the server processes that share one database (Postgres LISTEN/NOTIFY).
 * Absent on SQLite, which one process uses.
 */
export interface NotificationChannel {
  /**
   * Hears every payload sent on the channel, by any process (this one included). `onListen` runs
   * whenever listening (re)starts: payloads sent while the connection was down are lost, so a
   * listener that relies on them should look again. Resolves once listening; gives `stop`.
   */
  listen(onPayload: (payload: string) => void, onListen: () => void): Promise<() => Promise<void>>;
  /** Sends a payload (ASCII, under 8000 bytes) to every listener. */
  notify(payload: string): Promise<void>;
}

export interface NewMessage {
  /** Chosen by the caller when it needs to know the id before the insert; a UUID otherwise. */
  id?: string;
  role: MessageRole;
  status?: MessageStatus;
  content?: string;
  contentJson?: Json | null;
  /**
   * The message it follows. Left out, a message follows the one before it in its list, and the
   * first of a list the conversation's active leaf (createConversation: none).
   */
  parentMessageId?: string | null;
  clientId?: string | null;
  tokensIn?: number | null;
  tokensOut?: number | null;
  tokensSource?: TokensSource | null;
  finishReason?: string | null;
  toolCalls?: Json | null;
  functionCall?: Json | null;
  /** For a message that will stream: the writing process and how long its claim lasts. */
  lease?: Lease | null;
}

export interface NewConversation {
  title?: string | null;
  model?: string | null;
  metadata?: JsonObject;
}

/** A message as an import brings it: its own id and times; its seq is its place (1..n). */
export interface ImportedMessage extends NewMessage {
  id: string;
  /** Closed: a message that was still streaming comes in as an error (see the import). */
  status: 'final' | 'error';
  createdAt: Date;
  updatedAt: Date;
}

/** A whole conversation from an export file, for importConversation. */
export interface ImportedConversation {
  /** Its id in the file: kept when no conversation here has it. */
  id: string;
  /** The id it had before an earlier import renamed it (the file's import_source_id), if any. */
  sourceId: string | null;
  /** The leaf of the branch it shows, when the file names one. */
  activeMessageId?: string | null;
  title: string | null;
  model: string | null;
  metadata: JsonObject;
  createdAt: Date;
  updatedAt: Date;
  deletedAt: Date | null;
  /** In order: they get seqs 1..n. */
  messages: ImportedMessage[];
}

export interface ImportOutcome {
  /** `skipped`: the owner already has it, by its id or the id it came from; nothing was written. */
  status: 'imported' | 'skipped';
  /** Its id here: the file's, or a new one (`renamed`) when another owner has the file's. */
  id: string;
  renamed: boolean;
}

export interface ConversationPatch {
  title?: string | null;
  metadata?: JsonObject;
}

export interface MessageFinish {
  status: 'final' | 'error';
  finishReason?: string | null;
  tokensIn?: number | null;
  tokensOut?: number | null;
  tokensSource?: TokensSource | null;
  toolCalls?: Json | null;
  functionCall?: Json | null;
}

/** What writeBatch writes; each message and each completion appears once. */
export interface HistoryBatch {
  messages: { id: string; append: string; finish: MessageFinish | null }[];
  completions: { id: string; upstreamId: string | null; model: string | null }[];
}

/** Position in the newest-first listing: the last item of the previous page. */
export interface ListPosition {
  createdAt: Date;
  id: string;
}

export interface ListOptions {
  limit: number;
  after?: ListPosition | null;
  includeDeleted?: boolean;
  /** Conversations the principal owns, those shared with it, or both (the default). */
  scope?: 'owned' | 'shared' | 'all';
}

/**
 * A stored chat completion (OpenAI's `store: true`): one proxied exchange as OpenAI's stored
 * completions API shows it. Its answer is `messageId`; its request is what precedes that
 * message in the conversation.
 */
export interface ChatCompletionRecord {
  /** Ours, from newChatCompletionId(): the upstream's id may repeat. */
  id: string;
  conversationId: string;
  messageId: string;
  /** The upstream's `id` and `model`, once its answer started. */
  upstreamId: string | null;
  model: string | null;
  metadata: StringMap;
  createdAt: Date;
}

/** A completion record to write with the exchange's messages; `messageId` is one of them. */
export interface NewChatCompletion {
  id: string;
  messageId: string;
  model: string | null;
  metadata: StringMap;
  upstreamId?: string | null;
}

/** A completion record with its answer, as one principal may see it. */
export interface StoredChatCompletion {
  record: ChatCompletionRecord;
  message: Message;
  access: Access;
}

export interface ChatCompletionListOptions {
  limit: number;
  order: 'asc' | 'desc';
  /** The id of the last completion of the previous page (it need not exist any more). */
  after?: string | null;
  model?: string;
  /** Every pair must be in the completion's metadata. */
  metadata?: StringMap;
}

/**
 * A completion id that sorts by creation time: `chatcmpl-`, the creation time in milliseconds as
 * 12 hex digits, then 80 bits, random for the first id of a millisecond and counting up from it
 * for the next ones of this process (as monotonic ULIDs do), so one caller's exchanges list in
 * the order they were made. Lists page on it (keyset on the primary key), and an `after` that
 * was deleted meanwhile still marks a place.
 */
let last = { ms: 0, tail: 0n };
export function newChatCompletionId(now = Date.now()): string {
  if (now > last.ms) {
    const random = Buffer.from(crypto.getRandomValues(new Uint8Array(10))).toString('hex');
    // Room to count up: the top bit starts clear.
    last = { ms: now, tail: BigInt(`0x${random}`) >> 1n };
  } else {
    last = { ms: last.ms, tail: last.tail + 1n };
  }
  return `chatcmpl-${last.ms.toString(16).padStart(12, '0')}${last.tail.toString(16).padStart(20, '0')}`;
}

/**
 * A Responses API record (POST /v1/responses): one turn of a conversation as OpenAI's Responses
 * API shows it. Its output and status are read from its answer, the message `messageId`; what
 * cannot be read from the conversation (the request's parameters) is kept here.
 */
export interface ResponseRecord {
  /** `resp_…`, from newResponseId(). */
  id: string;
  conversationId: string;
  /** The answer: created with the record for a stream, written once it is in for a plain request. */
  messageId: string;
  /** The messages the request's input was stored as, in order (for input_items). */
  inputMessageIds: string[];
  model: string;
  instructions: string | null;
  previousResponseId: string | null;
  /** What the response object echoes of the request: tools, tool_choice, temperature… */
  params: JsonObject;
  metadata: StringMap;
  background: boolean;
  createdAt: Date;
}

/** A response record to write with the turn's messages. */
export type NewResponse = Omit<ResponseRecord, 'conversationId'>;

/** A response with its answer (null until a plain request's answer is written), as one principal may see it. */
export interface StoredResponse {
  record: ResponseRecord;
  message: Message | null;
  access: Access;
}

/** One event of a background response's stream, as it was sent: its sequence_number and JSON. */
export interface ResponseEvent {
  seq: number;
  data: string;
}

/** `resp_` and 32 hex digits that sort by creation time, as completion ids do. */
export const newResponseId = (now = Date.now()) => `resp_${newChatCompletionId(now).slice('chatcmpl-'.length)}`;

/** Messages of a conversation in seq order from `from` (inclusive) on, below seq `below`. */
export interface MessagePageOptions {
  order: 'asc' | 'desc';
  limit: number;
  from?: number | null;
  below?: number | null;
}

/**
 * One thing a search looks for: a word, or the words of a quoted phrase in that order; with
 * `prefix`, the last word matches any word that starts with it.
 */
export interface SearchTerm {
  words: string[];
  prefix: boolean;
}

/** A parsed search (db/search-query.ts): every term must match. No terms: nothing matches. */
export interface SearchQuery {
  terms: SearchTerm[];
}

/**
 * Position in a search's order (best match first, then newest, then id): the last hit of the
 * previous page. `score` is the engine's relevance as the store reported it, compared exactly.
 */
export interface SearchPosition {
  score: number;
  createdAt: Date;
  id: string;
}

/**
 * A message, or a conversation whose title matched (`messageId`, `seq` and `role` null). `text`
 * is what matched: the message's content (its indexed start, MAX_INDEXED_CHARS) or the title.
 */
export interface SearchHit {
  conversationId: string;
  conversationTitle: string | null;
  messageId: string | null;
  seq: number | null;
  role: MessageRole | null;
  text: string;
  createdAt: Date;
  score: number;
}

/**
 * What to append: a fixed list, or a function of the conversation as it stands inside the
 * transaction (so "only if empty" decisions cannot race another writer).
 */
export type MessagesToAppend = NewMessage[] | ((conversation: Conversation) => NewMessage[]);

/** One proxied exchange as appendTurn records it. */
export interface ChatTurn {
  /** The request's messages as they would be stored (system ones already left out when redacted), root first. */
  messages: NewMessage[];
  /** The answer to hang at the end of their path now (a stream's placeholder); null when it is written later. */
  answer: NewMessage | null;
}

/** What appendTurn did: the path the upstream is sent, and what it had to insert for it. */
export interface RecordedTurn {
  /** Ids of the request's messages as stored, root first: matched ones, then inserted ones. */
  path: string[];
  /** How many of the request's messages were already stored (the first `matched` of `path`). */
  matched: number;
  /** The messages inserted, in order; the answer last when there was one. */
  inserted: Message[];
  /** The message the answer follows: the last of `path` (null when the path is empty). */
  answerParentId: string | null;
}

/** What a conversation shows: the active path (root to active leaf) or every message. */
export type MessageView = 'active' | 'tree';

/** A retried write's first outcome, kept under its Idempotency-Key for 24 hours. */
export interface IdempotencyRecord {
  /** SHA-256 of the request (method, path, body) that first used the key. */
  requestHash: string;
  /** Null while the first request is still running. */
  status: number | null;
  /** The response body, or for a chat completion a pointer to its answer. */
  response: Json | null;
  createdAt: Date;
}

export type IdempotencyClaim = { claimed: true } | { claimed: false; record: IdempotencyRecord };

/** Users, their keys, sharing and claims: the identity half of the store. */
export interface IdentityStore {
  // Users and their credentials.
  /** Throws DuplicateError when another user already has this issuer and subject. */
  createUser(input: NewUser): Promise<User>;
  getUser(id: string): Promise<User | null>;
  updateUser(id: string, patch: { name?: string; isAdmin?: boolean }): Promise<User | null>;
  /** Oldest first, keyset on (created_at, id). */
  listUsers(options: { limit: number; after?: ListPosition | null }): Promise<{ items: User[]; hasMore: boolean }>;
  /** The user an identity provider calls `issuer` + `subject`, created on first sight (race-safe). */
  userForExternalId(issuer: string, subject: string, name: string): Promise<User>;
  /**
   * Erases a user: their conversations (with messages, shares and links) in batches of
   * `batchSize`, the shares they were given, their keys and sessions, then the user. Null when
   * there is no such user.
   */
  eraseUser(id: string, batchSize: number): Promise<Erasure | null>;

  createApiKey(input: NewApiKey): Promise<ApiKey>;
  listApiKeys(userId: string): Promise<ApiKey[]>;
  /** Keys whose display prefix is `prefix` (revoked and expired ones too), with their users. */
  apiKeysByPrefix(prefix: string): Promise<{ key: ApiKey; user: User }[]>;
  /** Records a use, unless one was recorded since `notBefore` (so at most one write a minute). */
  touchApiKey(id: string, now: Date, notBefore: Date): Promise<void>;
  /** False when there is no such key; revoking a revoked key keeps its first revocation time. */
  revokeApiKey(id: string, now: Date): Promise<boolean>;

  // Sharing: the caller has checked that the principal owns the conversation.
  /** Grants or changes a role; throws ConversationNotFoundError or UserNotFoundError. */
  setShare(conversationId: string, userId: string, role: ShareRole): Promise<Share>;
  listShares(conversationId: string): Promise<Share[]>;
  deleteShare(conversationId: string, userId: string): Promise<boolean>;
  /** Sets the conversation's public link (SHA-256 of its token, hex), replacing any previous one. */
  setShareLink(conversationId: string, tokenHash: string): Promise<void>;
  deleteShareLink(conversationId: string): Promise<boolean>;
  /** The live conversation a link token hash opens, or null. */
  sharedConversation(tokenHash: string): Promise<Conversation | null>;

  /** Moves an anonymous session's conversations (those with no user) to a user; returns how many. */
  claimSession(sessionId: string, userId: string): Promise<number>;
  /**
   * Token totals of the principal's own conversations (deleted ones too, until purged), over
   * messages created in [from, to): one row per day or model, or a single total row.
   */
  usage(owner: Principal, options: { from: Date; to: Date; groupBy: 'day' | 'model' | null }): Promise<UsageRow[]>;
}

export interface Store extends IdentityStore {
  readonly dialect: 'sqlite' | 'postgres';
  /** Applies the committed migrations of this dialect; safe to call from several processes. */
  migrate(): Promise<void>;
  ping(): Promise<boolean>;
  close(): Promise<void>;

  /**
   * Throws LimitExceededError when the session already has `maxPerSession` live conversations,
   * or its live conversations hold `maxBytes` with the new messages.
   * `messages` are inserted in the same transaction (seqs 1..n): the proxy's first turn costs
   * one transaction, not two.
   */
  createConversation(
    owner: Principal,
    input: NewConversation,
    options: {
      maxPerSession: number;
      session?: SessionInfo;
      messages?: NewMessage[];
      maxMessages?: number;
      maxBytes?: number;
      /** The active leaf (an imported tree's); default the last of `messages`. */
      activeMessageId?: string | null;
      /** The exchange's completion record, written in the same transaction as `messages`. */
      completion?: NewChatCompletion;
    },
  ): Promise<Conversation>;
  /** A conversation the principal may read (owned or shared with it), with its access; null otherwise. */
  getConversation(reader: Principal, id: string, options?: { includeDeleted?: boolean }): Promise<AccessibleConversation | null>;
  listConversations(reader: Principal, options: ListOptions): Promise<{ items: AccessibleConversation[]; hasMore: boolean }>;
  /** Owner only: null when not found, deleted or not owned. */
  updateConversation(owner: Principal, id: string, patch: ConversationPatch): Promise<(Conversation & { streamingMessageId: string | null }) | null>;
  /** Soft delete, owner only; false when not found, not owned or already deleted. */
  deleteConversation(owner: Principal, id: string): Promise<boolean>;
  /**
   * Every conversation whoever owns it (the operator's export), newest first, keyset as
   * listConversations; `access` is 'owner'.
   */
  listEveryConversation(options: Omit<ListOptions, 'scope'>): Promise<{ items: AccessibleConversation[]; hasMore: boolean }>;
  /**
   * Inserts a conversation from an export with its own id, times and messages (seqs 1..n), in one
   * transaction, or nothing. `skipped` when the owner already has it: a conversation of theirs,
   * deleted or not, whose id or import_source_id is the file's id or source id. An id another
   * owner holds is never touched: the conversation gets a new id, recording the file's in
   * import_source_id; a message id already taken gets a new one too (parent ids follow). Throws
   * LimitExceededError as createConversation does; a deleted conversation counts toward no
   * limit of live ones. With `dryRun` it decides and checks everything and writes nothing.
   */
  importConversation(
    owner: Principal,
    conversation: ImportedConversation,
    options: { maxPerSession: number; maxMessages?: number; maxBytes?: number; session?: SessionInfo; dryRun?: boolean },
  ): Promise<ImportOutcome>;

  /** Every message of the conversation (all branches), by seq. */
  listMessages(conversationId: string, options: { afterSeq: number; limit: number }): Promise<Message[]>;
  /**
   * A page of the conversation's messages by seq, each with its place among its siblings: the
   * active path (`active`: seqs grow along any path, so paging by seq works) or every message
   * (`tree`). `hasMore` when messages of the view follow the page.
   */
  readMessages(conversationId: string, options: { view: MessageView; afterSeq: number; limit: number }): Promise<{ items: PlacedMessage[]; hasMore: boolean }>;
  /** The path from the root to `messageId`, root first; null when the message is not in the conversation. */
  pathTo(conversationId: string, messageId: string): Promise<Message[] | null>;
  /**
   * Makes the branch through `messageId` active: the conversation's active leaf becomes the
   * newest message (highest seq) of its subtree. Owner or editor, as appendMessages; throws
   * MessageNotFoundError when the message is not in the conversation.
   */
  setActiveMessage(writer: Principal, conversationId: string, messageId: string): Promise<Conversation>;
  /**
   * Appends messages with dense seqs allocated from the conversation's counter inside one
   * transaction, for its owner or an editor. The list is a chain: its first message follows its
   * `parentMessageId` when given (MessageNotFoundError when that is not in the conversation),
   * else the active leaf; the last becomes the active leaf. Throws ConversationNotFoundError
   * (missing, deleted or not readable by `writer`), ConversationAccessError (a viewer) and
   * LimitExceededError (would pass `maxMessages`, or the conversation owner's live conversations
   * would hold more than `maxBytes`: an editor writes into the owner's allowance).
   */
  appendMessages(
    writer: Principal,
    conversationId: string,
    messages: MessagesToAppend,
    options: { maxMessages: number; maxBytes?: number; completion?: NewChatCompletion; response?: NewResponse },
  ): Promise<Message[]>;
  /**
   * Records one proxied exchange in the conversation's tree, in one transaction under the
   * conversation's lock (concurrent turns queue): the request's messages are matched from the
   * root (planTurn in db/tree.ts), what is not stored yet is inserted where the match ended
   * (a new branch when that point already has other children), the answer after them, and the
   * answer (else the path's end) becomes the active leaf. Same access and limits as appendMessages.
   */
  appendTurn(
    writer: Principal,
    conversationId: string,
    turn: ChatTurn,
    options: {
      maxMessages: number;
      maxBytes?: number;
      /** Throw AnswerPendingError, writing nothing, when the match stops at messages still being written (TurnPlan.pending). */
      deferIfPending?: boolean;
      /** The exchange's completion record, written in the same transaction as the turn. */
      completion?: NewChatCompletion;
    },
  ): Promise<RecordedTurn>;
  /** Appends text to a message's content (used for batched stream deltas). */
  appendContent(messageId: string, text: string): Promise<void>;
  /**
   * The running answers' writes of one moment, in one transaction (app/streaming/history-writer.ts
   * gathers them): for each message, text to append and then, if given, its end (as
   * finishMessage); the upstream's ids of completions (as noteChatCompletionUpstream). All or nothing.
   */
  writeBatch(batch: HistoryBatch): Promise<void>;
  /** Moves a message to its terminal status; a message already final or error is left alone. */
  finishMessage(messageId: string, finish: MessageFinish): Promise<void>;
  getMessage(messageId: string): Promise<Message | null>;
  /**
   * A message's content from code point `fromChar` (0-based), at most `maxChars` code points of
   * it (all when omitted), with its status in the same snapshot; null when there is no such
   * message. Code points, because both databases count characters so; stored text holds no lone
   * surrogate, so each is one or two UTF-16 code units.
   */
  readMessageText(messageId: string, fromChar: number, maxChars?: number): Promise<MessageText | null>;
  /**
   * Asks the writer of an open message to stop it: records when (the first request counts).
   * When no live process holds the message (its lease expired), nobody would: it is closed here
   * as `error` / `cancelled`. Returns the message as it then stands; null when there is no such
   * message or it had already ended (nothing changes then).
   */
  requestCancel(messageId: string, now: Date): Promise<Message | null>;
  /** A page of a conversation's messages in either order (seq bounds as MessagePageOptions say). */
  pageMessages(conversationId: string, options: MessagePageOptions): Promise<Message[]>;
  /**
   * Removes a message from its live conversation and closes the gap: later messages move down
   * one seq, the counter and the stored bytes follow, all in one transaction under the
   * conversation's lock. The caller has checked the principal's right to. False when there is
   * no such message in a live conversation.
   */
  deleteMessage(conversationId: string, messageId: string): Promise<boolean>;

  // Stored chat completions (OpenAI's API for them), visible to whoever may read their conversation.
  /** In id (= creation) order, from conversations the reader may read, live ones only. */
  listChatCompletions(reader: Principal, options: ChatCompletionListOptions): Promise<{ items: StoredChatCompletion[]; hasMore: boolean }>;
  /**
   * A completion the reader may read, by our id; with `orUpstreamId`, failing that, the most
   * recent one whose upstream id it is (the reader's own before those shared with it).
   */
  getChatCompletion(reader: Principal, id: string, options?: { orUpstreamId?: boolean }): Promise<StoredChatCompletion | null>;
  /** Replaces a completion's metadata (the caller checked access); null when there is none. */
  updateChatCompletion(id: string, metadata: StringMap): Promise<ChatCompletionRecord | null>;
  /** Deletes the record only: its conversation keeps the messages. */
  deleteChatCompletion(id: string): Promise<boolean>;
  /** Records the upstream's id and model once its answer starts (first write wins). */
  noteChatCompletionUpstream(id: string, upstream: { upstreamId: string | null; model: string | null }): Promise<void>;

  // Responses API records (POST /v1/responses), visible to whoever may read their conversation.
  /** A response the reader may read (its conversation live), with its answer if written. */
  getResponse(reader: Principal, id: string): Promise<StoredResponse | null>;
  /** Deletes the record (and its events) only: its conversation keeps the messages. */
  deleteResponse(id: string): Promise<boolean>;
  /** Appends a background response's stream events (seqs given by the caller, each once). */
  appendResponseEvents(responseId: string, events: ResponseEvent[]): Promise<void>;
  /** A background response's events after seq `afterSeq`, in order, at most `limit`. */
  readResponseEvents(responseId: string, afterSeq: number, limit: number): Promise<ResponseEvent[]>;

  /**
   * Heartbeat: extends the lease on every message still open under this lease owner, from the
   * moment it is created (a slow upstream's first byte included) until it is finished. Returns
   * the ids of those whose cancel was requested (see requestCancel).
   */
  renewLeases(holder: string, expiresAt: Date): Promise<string[]>;
  /**
   * Closes messages left in flight by a process that is gone (lease expired, or never set):
   * status `error`, finish_reason `interrupted`, content kept. Returns how many it closed.
   */
  sweepOrphans(now: Date): Promise<number>;
  /**
   * Hard-deletes one batch: conversations idle since before `idleBefore` unless pinned
   * (`metadata.pinned === true`), soft-deleted ones deleted before `deletedBefore`, and sessions
   * idle since `idleBefore` with no conversation left (unless they refused consent: that choice
   * is kept). Call again while either count reaches `batchSize`. A conversation whose metadata
   * cannot be read is never deleted for being idle, and is reported in `unreadable`.
   */
  purgeExpired(options: { idleBefore: Date | null; deletedBefore: Date; batchSize: number; keysBefore?: Date }): Promise<PurgeResult>;
  /** Live conversations and all their messages, for health reporting. */
  counts(): Promise<{ conversations: number; messages: number }>;
  /**
   * Full-text search over the messages and titles of the live conversations `reader` may read
   * (readableBy): best match first, ties newest first, then by id; `after` continues a page.
   * At most MAX_RANKED_MATCHES matches are ranked, the newest (db/search-query.ts).
   */
  search(reader: Principal, options: { query: SearchQuery; limit: number; after?: SearchPosition | null }): Promise<{ items: SearchHit[]; hasMore: boolean }>;
  /** Sums of known token counts per conversation; a conversation with none known has nulls. */
  tokenTotals(conversationIds: string[]): Promise<Map<string, TokenTotals>>;

  getConsent(sessionId: string): Promise<Consent | null>;
  setConsent(sessionId: string, consent: Consent, session?: SessionInfo): Promise<void>;

  /**
   * A value every process of the deployment shares: the stored one for `key`, or `candidate`
   * if none was stored yet (the first writer wins, whichever process it is).
   */
  sharedSetting(key: string, candidate: string): Promise<string>;

  /**
   * Takes an Idempotency-Key for the first request that uses it: `claimed` when this request
   * may run (no record, one older than `expiredBefore`, or a claim still running since before
   * `staleBefore` with the same request: its process died), else the record as it stands.
   */
  claimIdempotencyKey(owner: Principal, key: string, requestHash: string, options: { expiredBefore: Date; staleBefore: Date }): Promise<IdempotencyClaim>;
  /** Records the first outcome under a claimed key. */
  completeIdempotencyKey(owner: Principal, key: string, outcome: { status: number; response: Json }): Promise<void>;
  /** Gives a claimed key up (the request failed and wrote nothing): a retry runs again. */
  releaseIdempotencyKey(owner: Principal, key: string): Promise<void>;
  /** Between the processes of one database; absent on SQLite (one process). */
  readonly notifications?: NotificationChannel;
}

export interface PurgeResult {
  conversations: number;
  sessions: number;
  /** Idempotency keys past their 24 hours (with `keysBefore`). */
  idempotencyKeys?: number;
  /** Ids of idle conversations kept because their metadata cannot be read. */
  unreadable: string[];
}

export interface TokenTotals {
  tokensIn: number | null;
  tokensOut: number | null;
}

export class ConversationNotFoundError extends Error {
  override name = 'ConversationNotFoundError';
  constructor(readonly conversationId: string) {
    super(`No conversation found with id '${conversationId}'.`);
  }
}

/** A principal may read the conversation but not do what was asked (a viewer writing). */
export class ConversationAccessError extends Error {
  override name = 'ConversationAccessError';
  constructor(
    readonly conversationId: string,
    readonly access: Access,
  ) {
    super(`You have ${access} access to conversation '${conversationId}': only its owner or an editor may add to it.`);
  }
}

/**
 * appendTurn with `deferIfPending`: the request goes on past a message still being written, which
 * may be what it resends once finished. Nothing was written; wait for those messages, then record.
 */
export class AnswerPendingError extends Error {
  override name = 'AnswerPendingError';
  constructor(readonly messageIds: string[]) {
    super(`The request follows messages still being written: ${messageIds.join(', ')}.`);
  }
}

/** A message named by id (a parent, a branch to switch to, a fork point) is not in the conversation. */
export class MessageNotFoundError extends Error {
  override name = 'MessageNotFoundError';
  constructor(
    readonly conversationId: string,
    readonly messageId: string,
    /** The request field that named it. */
    readonly param: string = 'message_id',
  ) {
    super(`No message '${messageId}' in conversation '${conversationId}'.`);
  }
}

export class UserNotFoundError extends Error {
  override name = 'UserNotFoundError';
  constructor(readonly userId: string) {
    super(`No user found with id '${userId}'.`);
  }
}

/** A unique value (a user's issuer + subject) is already taken. */
export class DuplicateError extends Error {
  override name = 'DuplicateError';
}

export class LimitExceededError extends Error {
  override name = 'LimitExceededError';
  constructor(
    readonly limit: 'conversations_per_session' | 'messages_per_conversation' | 'bytes_per_session',
    readonly max: number,
  ) {
    super(
      limit === 'conversations_per_session'
        ? `This session already has the maximum of ${max} conversations; delete some before creating more.`
        : limit === 'messages_per_conversation'
          ? `This conversation already has the maximum of ${max} messages; start a new conversation.`
          : `This session's conversations already hold the most this server keeps per session (${max} bytes, MAX_BYTES_PER_SESSION); delete some before storing more.`,
    );
  }
}

/**
 * The driver's code of a database error: Drizzle wraps the driver's error (DrizzleQueryError,
 * with the failed query) and keeps it as `cause`.
 */
export function dbErrorCode(err: unknown): string | number | undefined {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' || typeof code === 'number') return code;
  }
  return undefined;
}

/**
 * Errors that mean "the database is busy or briefly unreachable, try again" rather than a bug:
 * SQLite lock contention, a Postgres connection that dropped or is being shut down.
 */
export function isTransientDbError(err: unknown): boolean {
  // Drizzle wraps the driver's error (DrizzleQueryError) and keeps it as `cause`.
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (isTransientCode((e as { code?: unknown }).code)) return true;
  }
  return false;
}

function isTransientCode(code: unknown): boolean {
  if (typeof code !== 'string') return false;
  return (
    code.startsWith('SQLITE_BUSY') ||
    code.startsWith('SQLITE_LOCKED') ||
    ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'CONNECTION_ENDED', 'CONNECTION_CLOSED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT'].includes(code) ||
    // Postgres SQLSTATE classes 08 (connection exception) and 57P (operator intervention).
    /^08...$/.test(code) ||
    /^57P0[1-3]$/.test(code) ||
    // lock_not_available: a lock_timeout ran out, Postgres's SQLITE_BUSY.
    code === '55P03' ||
    code === '40001' ||
    code === '40P01'
  );
}
