import type { Access } from '../db/store.js';
import { permissionDenied } from './errors.js';

/** What one may do with a conversation: read it, add to it (chat, post messages), or manage it (change, delete, share). */
export type Action = 'read' | 'write' | 'manage';

const level: Record<Access, number> = { viewer: 0, editor: 1, owner: 2 };
const needs: Record<Action, number> = { read: 0, write: 1, manage: 2 };
const doing: Record<Action, string> = { read: 'read it', write: 'add to it', manage: 'change, delete or share it' };
const who: Record<Action, string> = { read: 'anyone it is shared with', write: 'its owner or an editor', manage: 'its owner' };

export const allows = (access: Access, action: Action) => level[access] >= needs[action];

/** 403 for a caller who may read a conversation but not do `action` (one who may not read it gets 404). */
export function assertAllowed(access: Access, action: Action, conversationId: string): void {
  if (!allows(access, action)) {
    throw permissionDenied(`You have ${access} access to conversation '${conversationId}': only ${who[action]} may ${doing[action]}.`);
  }
}
