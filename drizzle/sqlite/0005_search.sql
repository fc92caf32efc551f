-- Full-text search (GET /v1/conversations/search): one FTS5 index holding every message's content
-- (rowid = the message's rowid) and every conversation's title (rowid = minus the conversation's
-- rowid), so one bm25 ranks both. Triggers keep it current on every write, streamed deltas
-- included. It is contentless (the text stays in messages and conversations only) with
-- contentless_delete, so replacing a message's entry on a delta does not re-read its old text.
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
INSERT INTO `search_index` (rowid, `body`) SELECT rowid, chat_proxy_search_text(`content`) FROM `messages` WHERE `content` <> '';--> statement-breakpoint
INSERT INTO `search_index` (rowid, `body`) SELECT -rowid, chat_proxy_search_text(`title`) FROM `conversations` WHERE `title` <> '';--> statement-breakpoint
CREATE TRIGGER `messages_search_insert` AFTER INSERT ON `messages`
WHEN NEW.`content` <> ''
BEGIN
  INSERT INTO `search_index` (rowid, `body`) VALUES (NEW.rowid, chat_proxy_search_text(NEW.`content`));
END;--> statement-breakpoint
-- A streamed answer grows by `content = content || delta`: its entry is replaced with the whole text.
CREATE TRIGGER `messages_search_update` AFTER UPDATE OF `content` ON `messages`
BEGIN
  INSERT OR REPLACE INTO `search_index` (rowid, `body`) VALUES (NEW.rowid, chat_proxy_search_text(NEW.`content`));
END;--> statement-breakpoint
-- Also run for the messages a conversation's deletion cascades to.
CREATE TRIGGER `messages_search_delete` AFTER DELETE ON `messages`
BEGIN
  DELETE FROM `search_index` WHERE rowid = OLD.rowid;
END;--> statement-breakpoint
CREATE TRIGGER `conversations_search_insert` AFTER INSERT ON `conversations`
WHEN NEW.`title` <> ''
BEGIN
  INSERT INTO `search_index` (rowid, `body`) VALUES (-NEW.rowid, chat_proxy_search_text(NEW.`title`));
END;--> statement-breakpoint
CREATE TRIGGER `conversations_search_title` AFTER UPDATE OF `title` ON `conversations`
BEGIN
  DELETE FROM `search_index` WHERE rowid = -OLD.rowid;
  INSERT INTO `search_index` (rowid, `body`) SELECT -NEW.rowid, chat_proxy_search_text(NEW.`title`) WHERE NEW.`title` <> '';
END;--> statement-breakpoint
CREATE TRIGGER `conversations_search_delete` AFTER DELETE ON `conversations`
BEGIN
  DELETE FROM `search_index` WHERE rowid = -OLD.rowid;
END;
