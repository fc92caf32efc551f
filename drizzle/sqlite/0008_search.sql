-- Full-text search (GET /v1/conversations/search): one FTS5 index holding every message's content
-- and every conversation's title, so one bm25 ranks both. An entry's rowid is its conversation's
-- rowid * 2^32 + the message's seq (0 for the title): a search keeps the entries of the
-- conversations its caller may read by shifting the rowid, with no lookup per match, and a
-- conversation's entries are one rowid range, deleted with it.
-- Triggers keep it current: a message is indexed when written whole, a streamed answer each time
-- it grows past a multiple of 2048 bytes and once more when it ends (re-indexing the whole text on
-- every delta cost ~0.5-1 ms of blocking per 250 ms flush; see the README's Search section).
-- It is contentless (the text stays in messages and conversations only) with contentless_delete,
-- so replacing a message's entry never re-reads its old text.
-- What it indexes is chat_proxy_search_text(text), registered by the SQLite store on its
-- connection before it migrates (db/search-text.ts): the first 100 000 characters, CJK characters
-- spaced apart so each is a word. unicode61 folds case and accents; marks (M*) count as letters
-- so that words in Indic scripts stay whole.
CREATE VIRTUAL TABLE `search_index` USING fts5(
  `body`,
  content='',
  contentless_delete=1,
  tokenize="unicode61 remove_diacritics 2 categories 'L* N* Co M*'"
);--> statement-breakpoint
INSERT INTO `search_index` (rowid, `body`)
  SELECT c.rowid * 4294967296 + m.`seq`, chat_proxy_search_text(m.`content`)
  FROM `messages` m JOIN `conversations` c ON c.`id` = m.`conversation_id` WHERE m.`content` <> '';--> statement-breakpoint
INSERT INTO `search_index` (rowid, `body`) SELECT rowid * 4294967296, chat_proxy_search_text(`title`) FROM `conversations` WHERE `title` <> '';--> statement-breakpoint
CREATE TRIGGER `messages_search_insert` AFTER INSERT ON `messages`
WHEN NEW.`content` <> ''
BEGIN
  INSERT INTO `search_index` (rowid, `body`)
    SELECT c.rowid * 4294967296 + NEW.`seq`, chat_proxy_search_text(NEW.`content`) FROM `conversations` c WHERE c.`id` = NEW.`conversation_id`;
END;--> statement-breakpoint
-- A streamed answer grows by `content = content || delta`: its entry is replaced with the whole
-- text when it crosses a multiple of 2048 bytes, and for any change once it is no longer open.
CREATE TRIGGER `messages_search_update` AFTER UPDATE OF `content` ON `messages`
WHEN NEW.`status` NOT IN ('draft', 'streaming')
  OR length(CAST(NEW.`content` AS BLOB)) / 2048 > length(CAST(OLD.`content` AS BLOB)) / 2048
BEGIN
  INSERT OR REPLACE INTO `search_index` (rowid, `body`)
    SELECT c.rowid * 4294967296 + NEW.`seq`, chat_proxy_search_text(NEW.`content`) FROM `conversations` c WHERE c.`id` = NEW.`conversation_id`;
END;--> statement-breakpoint
-- The end of a stream (final, error, or closed by the orphan sweep): the whole text.
CREATE TRIGGER `messages_search_finish` AFTER UPDATE OF `status` ON `messages`
WHEN OLD.`status` IN ('draft', 'streaming') AND NEW.`status` NOT IN ('draft', 'streaming') AND NEW.`content` <> ''
BEGIN
  INSERT OR REPLACE INTO `search_index` (rowid, `body`)
    SELECT c.rowid * 4294967296 + NEW.`seq`, chat_proxy_search_text(NEW.`content`) FROM `conversations` c WHERE c.`id` = NEW.`conversation_id`;
END;--> statement-breakpoint
-- A message deleted alone. When its conversation is deleted, that row is already gone when the
-- cascade reaches the messages, and the conversation's trigger below removes the whole range.
CREATE TRIGGER `messages_search_delete` AFTER DELETE ON `messages`
BEGIN
  DELETE FROM `search_index` WHERE rowid = (SELECT c.rowid * 4294967296 + OLD.`seq` FROM `conversations` c WHERE c.`id` = OLD.`conversation_id`);
END;--> statement-breakpoint
CREATE TRIGGER `conversations_search_insert` AFTER INSERT ON `conversations`
WHEN NEW.`title` <> ''
BEGIN
  INSERT INTO `search_index` (rowid, `body`) VALUES (NEW.rowid * 4294967296, chat_proxy_search_text(NEW.`title`));
END;--> statement-breakpoint
CREATE TRIGGER `conversations_search_title` AFTER UPDATE OF `title` ON `conversations`
BEGIN
  DELETE FROM `search_index` WHERE rowid = NEW.rowid * 4294967296;
  INSERT INTO `search_index` (rowid, `body`) SELECT NEW.rowid * 4294967296, chat_proxy_search_text(NEW.`title`) WHERE NEW.`title` <> '';
END;--> statement-breakpoint
CREATE TRIGGER `conversations_search_delete` AFTER DELETE ON `conversations`
BEGIN
  DELETE FROM `search_index` WHERE rowid BETWEEN OLD.rowid * 4294967296 AND OLD.rowid * 4294967296 + 4294967295;
END;
